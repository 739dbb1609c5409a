"""How long a recipe will train on this machine, before it trains: a few optimizer steps of its
model on batches shaped like the data, timed now, scaled to the planned epochs.

``textlstm init`` prints the estimate and fits its recipe into a budget of minutes: 10 up to
20,000 training texts, 30 up to 100,000, 60 beyond (``--minutes`` sets another).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from textlstm.recipe import ModelConfig, TrainConfig

ADVERSARIAL_COST = 2.7  # a step with train.adversarial, against a plain one (measured on SST-2)
VALIDATION_COST = 1 / 3  # a forward pass, against a training step of the same tokens
TIMED_STEPS, WARM_UP_STEPS = 4, 2


def budget_minutes(rows: int) -> float:
    """The training time a starting recipe keeps within, by the size of its training split."""
    return 10.0 if rows <= 20_000 else 30.0 if rows <= 100_000 else 60.0


@dataclass(frozen=True)
class Estimate:
    step_seconds: float  # one optimizer step of a full batch, as timed
    steps: int  # optimizer steps an epoch
    epochs: int  # planned (early stopping may end the run sooner)
    epoch_seconds: float  # one epoch's steps and its validation pass

    @property
    def seconds(self) -> float:
        return self.epochs * self.epoch_seconds


def time_step(
    model: ModelConfig, batch_size: int, length: int, vocab_size: int, classes: int
) -> float:
    """Seconds of one training step (forward, loss, backward, AdamW) of ``model`` on a batch of
    ``batch_size`` texts of ``length`` tokens; the fastest of a few after warming up."""
    import torch
    from torch import nn

    from textlstm.model.classifier import LSTMClassifier

    generator = torch.Generator().manual_seed(0)
    network = LSTMClassifier(model.model_copy(update={"wide": "none"}), vocab_size, classes)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    tokens = torch.randint(2, vocab_size, (batch_size, length), generator=generator)
    lengths = torch.full((batch_size,), length, dtype=torch.int64)
    targets = torch.randint(0, classes, (batch_size,), generator=generator)
    seconds = []
    for _ in range(WARM_UP_STEPS + TIMED_STEPS):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(network(tokens, lengths), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return min(seconds[WARM_UP_STEPS:])  # noise from other work only ever adds


def estimate(
    model: ModelConfig,
    train: TrainConfig,
    rows: int,
    validation_rows: int,
    mean_length: float,
    vocab_size: int,
    classes: int,
) -> Estimate:
    """The planned training time of a recipe on ``rows`` training texts of ``mean_length``
    tokens on average (after truncation); length bucketing keeps padding small, so a batch
    costs about what texts of the mean length cost."""
    plain = time_step(model, train.batch_size, max(1, round(mean_length)), vocab_size, classes)
    step = plain * (ADVERSARIAL_COST if train.adversarial > 0 else 1.0)
    steps = max(1, math.ceil(rows / train.batch_size))
    validation = math.ceil(validation_rows / train.batch_size) * plain * VALIDATION_COST
    return Estimate(step, steps, train.planned_epochs(steps), steps * step + validation)


@dataclass(frozen=True)
class Fitted:
    """A recipe's estimate after fitting it into ``budget_seconds``: the keys changed (dotted key
    -> (value, reason)), and the estimate of the recipe with those changes."""

    estimate: Estimate
    budget_seconds: float
    changes: dict[str, tuple[object | None, str]]


def fit_budget(
    first: Estimate,
    budget_seconds: float,
    max_length: int,
    mean_length: float,
    adversarial: bool = False,
) -> Fitted:
    """No adversarial training first, then fewer epochs (no fewer than two), then shorter texts,
    until the planned time fits. A change to None takes the key out of the recipe."""
    if first.seconds <= budget_seconds:
        return Fitted(first, budget_seconds, {})
    minutes = budget_seconds / 60
    if adversarial:
        plain = first.step_seconds / ADVERSARIAL_COST
        validation = first.epoch_seconds - first.steps * first.step_seconds
        cheaper = Estimate(plain, first.steps, first.epochs, first.steps * plain + validation)
        rest = fit_budget(cheaper, budget_seconds, max_length, mean_length)
        reason = (
            f"{minutes:g} min of training: with adversarial training the planned "
            f"{first.seconds / 60:.1f} min would not fit"
        )
        return Fitted(
            rest.estimate, budget_seconds, {"train.adversarial": (None, reason), **rest.changes}
        )
    epochs = math.floor(budget_seconds / first.epoch_seconds)
    if epochs >= 2:
        reason = (
            f"{minutes:g} min of training: epochs of about {first.epoch_seconds:.0f} s here "
            f"leave room for {epochs}"
        )
        fewer = Estimate(first.step_seconds, first.steps, epochs, first.epoch_seconds)
        return Fitted(fewer, budget_seconds, {"train.max_epochs": (epochs, reason)})
    share = budget_seconds / (2 * first.epoch_seconds)  # the share of each text two epochs allow
    length = max(16, int(max_length * share) // 16 * 16)
    scale = min(length, mean_length) / max(1.0, mean_length)
    shorter = Estimate(first.step_seconds * scale, first.steps, 2, first.epoch_seconds * scale)
    return Fitted(
        shorter,
        budget_seconds,
        {
            "train.max_epochs": (2, f"{minutes:g} min of training: two epochs at most"),
            "tokenizer.max_length": (
                length,
                f"{minutes:g} min of training: two epochs of texts cut to {length} tokens fit",
            ),
        },
    )
