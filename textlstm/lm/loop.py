"""The language model's epoch loop as a generator, in the shape of ``training.loop``: train an
epoch over the text streams, score the held-out perplexity, yield, repeat. The caller
(``pretrainer``) logs, checkpoints, reports and stops; what a step changes lives in ``LMRun``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm import threads
from textlstm.errors import TrainingDiverged
from textlstm.lm.corpus import Corpus
from textlstm.lm.events import LMEpoch, PretrainEvents
from textlstm.lm.model import LanguageModel, State
from textlstm.lm.state import Position, order_rng
from textlstm.lm.streams import Window, join, steps_in, width, windows
from textlstm.model.batching import to_device
from textlstm.recipe import PretrainConfig, Recipe
from textlstm.runtime import autocast, optimizer_step
from textlstm.training import distributed
from textlstm.training.distributed import SINGLE, World

LR_RATIO = 32  # the slanted triangular schedule's lowest rate is lr / 32 (ULMFiT's ratio)


@dataclass
class LMRun:
    """One pretraining in progress: what it trains, where, and how far it got."""

    recipe: Recipe
    corpus: Corpus
    model: LanguageModel
    optimizer: torch.optim.Optimizer
    log_q: torch.Tensor
    folder: Path
    target: torch.device
    precision: str
    budget: float | None  # seconds of training
    events: PretrainEvents
    history: list[LMEpoch] = field(default_factory=list)
    data_dir: str | None = None
    step: int = 0  # steps done, over every epoch
    seconds: float = 0.0
    tokens: int = 0
    world: World = SINGLE
    steps: nn.Module | None = None  # the loss of a step, wrapped in DDP in a distributed run
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    @property
    def cfg(self) -> PretrainConfig:
        return self.recipe.pretrain

    @property
    def steps_per_epoch(self) -> int:
        return steps_in(self.corpus.tokens, self.cfg.batch_size, self.cfg.bptt)

    def share(self, tokens: int) -> distributed.Share:
        """This rank's columns of a stream of ``tokens`` tokens."""
        return self.world.share(np.arange(width(tokens, self.cfg.batch_size)))


class LMLoss(nn.Module):
    """One step's sampled-softmax loss over both directions as a forward call, the form
    DistributedDataParallel wraps, and each direction's state after it, detached."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        inputs: list[torch.Tensor],
        targets: list[torch.Tensor],
        states: list[State | None],
        samples: torch.Tensor,
        log_q: torch.Tensor,
    ) -> tuple[torch.Tensor, list[State]]:
        losses, after = [], []
        for d, (x, y) in enumerate(zip(inputs, targets)):
            outputs, state = self.model.run(d, x, states[d])
            losses.append(self.model.sampled_loss(outputs, y, samples, log_q))
            after.append([_detach(s) for s in state])
        return torch.stack(losses).mean(), after


def learning_rate(cfg: PretrainConfig, progress: float) -> float:
    """Slanted triangular (Howard & Ruder 2018): up over ``warmup_fraction`` of the run, then
    down to lr / 32; ``progress`` is the share of the run done, by steps or by the time budget."""
    cut = cfg.warmup_fraction
    p = min(max(progress, 0.0), 1.0)
    x = p / cut if cut > 0 and p < cut else 1.0 - (p - cut) / max(1e-9, 1.0 - cut)
    return cfg.lr * (1.0 + (LR_RATIO - 1) * x) / LR_RATIO


def epochs(
    run: LMRun, position: Position, checkpoint: Callable[[Position], None]
) -> Iterator[tuple[LMEpoch, Position, bool]]:
    """Epochs from ``position`` on: train one, score the held-out perplexity, yield the result,
    the position the next epoch starts from, and whether the time budget cut it. Like
    ``training.loop.epochs`` it neither logs, saves between epochs nor stops: its caller does.
    Each epoch's text order is drawn from the generator state ``position`` holds, so a resumed
    run reads what the uninterrupted one would have; an epoch longer than
    ``pretrain.checkpoint_minutes`` calls ``checkpoint`` on the way."""
    cfg = run.cfg
    while position.epoch <= cfg.epochs:
        rng = order_rng(position.order_state)
        stream = join(run.corpus.train, rng.permutation(len(run.corpus.train)))
        run.events.epoch_start(position.epoch, cfg.epochs, run.steps_per_epoch)
        cut = train_epoch(run, stream, position, checkpoint)
        perplexities = [perplexity(run, d) for d in range(len(run.model.directions))]
        result = LMEpoch(
            position.epoch, position.loss / max(position.step, 1), perplexities[0],
            perplexities[1] if len(perplexities) > 1 else None,
            run.optimizer.param_groups[0]["lr"], position.seconds,
            position.tokens / max(position.seconds, 1e-9), position.step,
        )  # fmt: skip
        position = Position(epoch=position.epoch + 1, order_state=dict(rng.bit_generator.state))
        yield result, position, cut
        if cut:
            return


def train_epoch(
    run: LMRun, stream: np.ndarray, position: Position, checkpoint: Callable[[Position], None]
) -> bool:
    """The epoch's steps from ``position`` on, which they advance; returns whether the time
    budget stopped it. ``checkpoint`` is called every ``pretrain.checkpoint_minutes``. The ranks
    of a distributed run go by rank 0's clock, so they stop and checkpoint at the same step."""
    cfg, model = run.cfg, run.model
    model.train()
    states = position.states or [None] * len(model.directions)
    total_steps = run.steps_per_epoch * cfg.epochs
    saved = time.perf_counter()
    both = cfg.directions == "both"
    share = run.share(len(stream))
    for window in windows(stream, cfg.batch_size, cfg.bptt, both, first=position.step):
        tick = time.perf_counter()
        progress = run.step / total_steps
        if run.budget is not None:
            progress = max(progress, run.seconds / run.budget)
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, progress)
        mine = window.columns(share.rows) if run.world.many else window
        value = _step(run, mine, states, share.weight)
        spent = time.perf_counter() - tick
        due = time.perf_counter() - saved >= cfg.checkpoint_minutes * 60
        if run.world.many:
            value, spent, due = _agree(run, value, share.real, spent, due)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the language model's loss became {value} at step {position.step + 1} of "
                f"epoch {position.epoch}: lower pretrain.lr (now {cfg.lr:g}) or "
                "pretrain.clip_grad_norm"
            )
        position.step, position.loss, position.tokens = (
            position.step + 1, position.loss + value, position.tokens + window.tokens,
        )  # fmt: skip
        position.seconds, position.states = position.seconds + spent, states
        run.step, run.seconds, run.tokens = (
            run.step + 1, run.seconds + spent, run.tokens + window.tokens,
        )  # fmt: skip
        if due:
            checkpoint(position)
            saved = time.perf_counter()
        run.events.batch_end(value, window.tokens)
        threads.follow()
        if run.budget is not None and run.seconds >= run.budget:
            return True
    return False


def _agree(
    run: LMRun, value: float, real: int, spent: float, due: bool
) -> tuple[float, float, bool]:
    """The whole step's loss, and rank 0's seconds and checkpoint clock, on every rank."""
    main = run.world.main
    total, rows, seconds, checkpoint_due = distributed.all_sum(
        run.world,
        [value * real, real, spent if main else 0.0, float(due and main)],
        run.target,
    )
    return total / max(rows, 1), seconds, checkpoint_due > 0


def _step(run: LMRun, window: Window, states: list[State | None], weight: float) -> float:
    """One optimizer step on both directions' windows; ``states`` carry over, detached.
    ``weight`` scales a rank's share of a distributed step (``World.share``)."""
    model, cfg = run.model, run.cfg
    samples = torch.multinomial(run.log_q.exp(), cfg.samples, replacement=True)  # (S,)
    inputs = [to_device(x, run.target) for x in window.inputs]
    targets = [to_device(y, run.target) for y in window.targets]
    assert run.steps is not None
    with autocast(run.target, run.precision):
        loss, after = run.steps(inputs, targets, states, samples, run.log_q)
    states[:] = after
    run.optimizer.zero_grad(set_to_none=True)
    scaled = loss * weight if run.world.many else loss
    optimizer_step(scaled, model, run.optimizer, cfg.clip_grad_norm, run.scaler)
    return float(loss.item())


def _detach(state: Any) -> Any:
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def perplexity(run: LMRun, direction: int) -> float:
    """The direction's perplexity on the held-out stream, full softmax, no dropout; each rank of
    a distributed run scores its columns."""
    model, stream = run.model, run.corpus.heldout
    if direction == 1:
        stream = stream[::-1].copy()
    share = run.share(len(stream))
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.inference_mode(), autocast(run.target, run.precision):
        for window in windows(stream, run.cfg.batch_size, run.cfg.bptt, both=False):
            mine = window.columns(share.rows) if run.world.many else window
            outputs, state = model.run(direction, mine.inputs[0].to(run.target), state)
            nll, n = model.full_loss(outputs, mine.targets[0].to(run.target))
            if share.real:
                total, count = total + nll, count + n
    model.train()
    total, counted = distributed.all_sum(run.world, [total, count], run.target)
    return math.exp(min(total / max(counted, 1), 50.0))
