"""The epoch loop as a generator: train one epoch, validate, yield the result, repeat.

It neither saves, logs nor stops: its callers decide that (``trainer`` keeps the best weights,
writes a resumable checkpoint and stops early; a tuning trial reports to its pruner), as spaCy's
``train_while_improving`` leaves them to its caller. What changes the model lives in ``Fit``, so
a new run and a resumed one build it the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from textlstm import threads
from textlstm.errors import TrainingDiverged
from textlstm.model.batching import (
    balanced_weights,
    bucketed_batches,
    collate,
    lengths_of,
    to_device,
)
from textlstm.model.classifier import logits_for
from textlstm.model.directions import two_lanes_for
from textlstm.recipe import TrainConfig
from textlstm.run.decision import Decision, tune_thresholds
from textlstm.run.metrics import multi_scores, quick_scores
from textlstm.runtime import autocast, optimizer_step
from textlstm.training import distributed
from textlstm.training.distributed import SINGLE, World
from textlstm.training.events import EpochResult, Events

Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]
MULTI = Decision(multi_label=True)


@dataclass
class Fit:
    """The model and everything that updates it. In a distributed run ``step`` is the model
    wrapped in DistributedDataParallel, which training steps call; evaluation and saving use
    ``model`` itself."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_labels: np.ndarray
    val_labels: np.ndarray
    num_classes: int
    world: World = SINGLE
    step: nn.Module | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    average: AveragedModel | None = None  # train.ema_decay: the weights' moving average
    multi_label: bool = False  # labels (rows, classes) of 0/1; a sigmoid per label
    thresholds: str | float = "per_label"  # train.thresholds: how multi-label decides
    threshold_shrink: float = 0.0  # train.threshold_shrink
    metric: str = "accuracy"  # train.metric: what a global threshold is tuned for

    @property
    def evaluated(self) -> nn.Module:
        """The weights validation scores and a run keeps: the average's, when there is one."""
        return self.model if self.average is None else self.average.module


@dataclass
class Pass:
    """One epoch over the training batches: summed loss, rows and real tokens."""

    loss: float = 0.0
    rows: int = 0
    tokens: int = 0


def epochs(
    fit: Fit,
    train_ids: Sequence[np.ndarray],
    val_ids: Sequence[np.ndarray],
    cfg: TrainConfig,
    first: int,
    rng: np.random.Generator,
    device: torch.device,
    precision: str,
    events: Events,
) -> Iterator[EpochResult]:
    """Epochs ``first`` .. ``cfg.epochs``; each batch order is drawn from ``rng``, so a resumed
    run that restored ``rng`` draws what the uninterrupted one would have."""
    lengths = lengths_of(train_ids)
    weights = balanced_weights(fit.train_labels) if cfg.sampler == "balanced" else None
    for epoch in range(first, cfg.total_epochs + 1):
        distributed.dropout_seed(fit.world, rng)
        batches = bucketed_batches(lengths, cfg.batch_size, cfg.bucket_size, rng, weights)
        events.epoch_start(epoch, cfg.total_epochs, len(batches))
        tick = time.perf_counter()
        with two_lanes_for(fit.model, device):  # a bidirectional model's directions side by side
            done = train_epoch(fit, train_ids, batches, cfg, epoch, device, precision, events)
        train_seconds = time.perf_counter() - tick
        val_loss, scores = validate(fit, val_ids, cfg.eval_batch_size, device, precision)
        yield EpochResult(
            epoch,
            done.loss / max(done.rows, 1),
            val_loss,
            scores["accuracy"],
            scores["macro_f1"],
            float(fit.scheduler.get_last_lr()[0]),
            time.perf_counter() - tick,
            done.tokens / train_seconds,
            micro_f1=scores.get("micro_f1"),
        )


def train_epoch(
    fit: Fit,
    ids: Sequence[np.ndarray],
    batches: list[np.ndarray],
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    precision: str,
    events: Events,
) -> Pass:
    """One pass of optimizer steps. A loss that is not finite stops before it reaches the
    weights, so the last checkpoint and the model stay as they were. In a distributed run each
    rank computes its share of every batch; the loss and tokens reported are the whole batch's."""
    fit.model.train()
    model, world = fit.step or fit.model, fit.world
    all_lengths = lengths_of(ids)
    done = Pass()
    for step, rows in enumerate(batches, start=1):
        share = world.share(rows)
        tokens, lengths = collate(ids, share.rows)
        targets = to_device(torch.from_numpy(fit.train_labels[share.rows]), device)
        tokens, lengths = to_device(tokens, device), to_device(lengths, device)
        probe = embedding_probe(fit.model, tokens) if cfg.adversarial > 0 else None
        with autocast(device, precision):  # the probed pass runs unwrapped: adversarial_loss
            if probe is None:
                logits = model(tokens, lengths)
            else:
                logits = fit.model(tokens, lengths, probe)
        loss = fit.criterion(logits.float(), targets)  # logits (batch, classes)
        value = loss.item()
        if probe is not None:
            pushed = adversarial_loss(
                fit, model, tokens, lengths, targets, loss, probe, cfg, precision
            )
            loss = loss + pushed
        if world.many:  # every rank must see the same value, or they would part ways
            total, real = distributed.all_sum(world, [value * share.real, share.real], device)
            value = total / real
        if not math.isfinite(value):
            raise TrainingDiverged(diverged(value, epoch, step, cfg))
        fit.optimizer.zero_grad(set_to_none=True)
        scaled = loss * share.weight if world.many else loss
        optimizer_step(scaled, fit.model, fit.optimizer, cfg.clip_grad_norm, fit.scaler)
        fit.scheduler.step()
        if fit.average is not None:
            fit.average.update_parameters(fit.model)
        count = int(all_lengths[rows].sum())
        done.loss, done.rows, done.tokens = (
            done.loss + value * len(rows),
            done.rows + len(rows),
            done.tokens + count,
        )
        events.batch_end(value, count)
        threads.follow()  # another job started or ended beside this one: move the threads
    return done


def embedding_probe(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A zero perturbation of the embeddings (seq_len, batch, embedding_dim) whose gradient
    adversarial training reads; adding it changes no value."""
    embedding: nn.Embedding = model.embedding  # type: ignore[assignment]
    shape = (tokens.shape[1], tokens.shape[0], embedding.embedding_dim)
    return torch.zeros(shape, device=tokens.device).requires_grad_()


def adversarial_loss(
    fit: Fit,
    model: nn.Module,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    loss: torch.Tensor,
    probe: torch.Tensor,
    cfg: TrainConfig,
    precision: str,
) -> torch.Tensor:
    """The loss of the batch with its embeddings pushed along the gradient of ``loss`` (Miyato
    et al. 2017), each text's push ``cfg.adversarial`` times its embeddings' norm. ``loss`` came
    from the unwrapped module with ``probe`` added, so under DDP no gradient sync started; the
    pushed pass runs through ``model``, whose backward then syncs both losses' gradients."""
    (grad,) = torch.autograd.grad(loss, probe, retain_graph=True)  # (seq_len, batch, dim)
    grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
    embedding: nn.Embedding = fit.model.embedding  # type: ignore[assignment]
    with torch.no_grad():
        embedded = embedding(tokens.t()).float()  # (seq_len, batch, dim); pads are 0
        scale = embedded.norm(dim=(0, 2)) / grad.norm(dim=(0, 2)).clamp_min(1e-12)  # (batch,)
        push = (cfg.adversarial * scale).view(1, -1, 1) * grad
    with autocast(tokens.device, precision):
        pushed = model(tokens, lengths, push)  # (batch, classes)
    return fit.criterion(pushed.float(), targets)


def moving_average(model: nn.Module, decay: float) -> AveragedModel:
    """PyTorch's AveragedModel as an exponential moving average whose decay ramps up as
    min(decay, (1 + n) / (10 + n)) after n updates, so early averages follow the weights closely
    rather than holding on to the initial ones. Buffers (the fitted linear model's) are copied,
    not averaged."""

    def update(averaged: Tensors, current: Tensors, count: torch.Tensor | int) -> None:
        n = int(count)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, count)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=False)


def diverged(value: float, epoch: int, step: int, cfg: TrainConfig) -> str:
    clip = (
        f"train.clip_grad_norm (now {cfg.clip_grad_norm:g})"
        if cfg.clip_grad_norm > 0
        else "set train.clip_grad_norm (now 0: off), e.g. to 1.0"
    )
    return (
        f"the training loss became {value} at step {step} of epoch {epoch}: training diverged; "
        f"lower train.lr (now {cfg.lr:g}) or {clip}, then train again"
    )


def validate(
    fit: Fit, ids: Sequence[np.ndarray], batch_size: int, device: torch.device, precision: str
) -> tuple[float, dict[str, float]]:
    """Validation loss and scores (accuracy and macro-F1; micro-F1 too for multi-label data,
    decided by thresholds tuned on these rows). In a distributed run each rank computes the
    logits of its rows and every rank gets all of them, so every rank decides alike."""
    world = fit.world
    if world.many:
        mine = [ids[i] for i in world.rows(len(ids))]
        local = logits_for(fit.evaluated, mine, batch_size, device, precision)
        logits = distributed.gather_rows(world, local, len(ids), device)
    else:
        logits = logits_for(fit.evaluated, ids, batch_size, device, precision)
    return validation_scores(fit, logits)


def validation_scores(fit: Fit, logits: np.ndarray) -> tuple[float, dict[str, float]]:
    """The loss and scores of the validation logits (rows, classes)."""
    scores, truth = torch.from_numpy(logits).float(), torch.from_numpy(fit.val_labels)
    if not fit.multi_label:
        loss = float(nn.functional.cross_entropy(scores, truth))
        accuracy, macro_f1 = quick_scores(fit.val_labels, logits.argmax(1), fit.num_classes)
        return loss, {"accuracy": accuracy, "macro_f1": macro_f1}
    loss = float(nn.functional.binary_cross_entropy_with_logits(scores, truth))
    decision = tuned(fit, logits)
    chosen = decision.chosen(decision.probabilities(logits))
    return loss, multi_scores(fit.val_labels.astype(bool), chosen)


def tuned(fit: Fit, logits: np.ndarray) -> Decision:
    """The multi-label decision whose thresholds suit the validation logits best."""
    probabilities = MULTI.probabilities(logits)
    chosen = tune_thresholds(
        probabilities, fit.val_labels, fit.thresholds, fit.metric, fit.threshold_shrink
    )
    return Decision(True, chosen)
