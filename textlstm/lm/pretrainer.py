"""``textlstm pretrain``: a recipe in, a language-model run folder ``<out>/<name>-lm/<stamp>/`` out.

The folder holds ``model.safetensors`` (the embedding, the layers of each direction, their
projections and the softmax bias), ``recipe.toml``, ``vocab.json`` (and ``tokenizer.json`` for
subword kinds), ``metrics.jsonl`` and ``meta.json``; a classifier starts from it with
``[model] encoder``. Like ``train``, a run trains in a ``.partial`` folder renamed when complete.

A pretraining recipe may itself name ``[model] encoder``: the language model then starts from
that earlier one's weights, tokenizer and vocabulary, and goes on learning on this recipe's text
(ULMFiT's fine-tuning of a general language model on the target task's text).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm import settings
from textlstm.errors import CheckpointError, TrainingDiverged
from textlstm.files import append_text
from textlstm.lm.corpus import Corpus, prepare_corpus
from textlstm.lm.events import LMEpoch, PretrainEvents, PretrainResult
from textlstm.lm.model import LanguageModel, State
from textlstm.lm.state import FILE as STATE_FILE
from textlstm.lm.state import Position, load_state, order_rng, restore, save_state
from textlstm.lm.streams import Window, join, proposal, steps_in, width, windows
from textlstm.model.batching import to_device
from textlstm.recipe import PretrainConfig, Recipe
from textlstm.run import checkpoint
from textlstm.runtime import (
    autocast,
    bf16_support,
    grad_scaler,
    optimizer_step,
)
from textlstm.text.vocab import Vocab
from textlstm.training import distributed, lifecycle
from textlstm.training.distributed import SINGLE, World
from textlstm.training.state import scaler_state
from textlstm.training.transfer import absolute_encoder, encoder_folder, load_language_model

LR_RATIO = 32  # the slanted triangular schedule's lowest rate is lr / 32 (ULMFiT's ratio)
FOLDER_SUFFIX = "-lm"


@dataclass
class _Run:
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


class _Loss(nn.Module):
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


def pretrain(
    recipe: Recipe,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: PretrainEvents | None = None,
    max_minutes: float | None = None,
) -> PretrainResult:
    """Pretrain the recipe's language model; ``max_minutes`` (else ``pretrain.max_minutes``)
    stops it after that much training, at a step boundary, with the schedule fitted to it.
    Launched by torchrun, the processes train it together (``textlstm.training.distributed``): each
    rank reads its share of the stream's columns, rank 0 writes the run folder."""
    return distributed.together(
        device,
        lambda world, target: _new(world, target, recipe, out_dir, data_dir, events, max_minutes),
    )


def _new(
    world: World,
    target: torch.device,
    recipe: Recipe,
    out_dir: str | Path,
    data_dir: str | Path | None,
    events: PretrainEvents | None,
    max_minutes: float | None,
) -> PretrainResult:
    events = events if world.main and events is not None else PretrainEvents()  # rank 0 reports
    lifecycle.opening(recipe, target)
    corpus = distributed.main_first(world, lambda: prepare_corpus(recipe, data_dir), target)
    for note in corpus.notes:
        events.message(note)
    minutes = max_minutes or recipe.pretrain.max_minutes
    budget = None if minutes is None else minutes * 60
    run = _build(recipe, corpus, target, budget, events, world)
    run.data_dir = _absolute(data_dir)
    events.message(_describe(run))
    start = encoder_folder(recipe)
    if start is not None:
        load_language_model(run.model, start)
        events.message(f"starting from the language model {start}: {_perplexities(run)}")
    run.folder = Path(distributed.from_main(world, lambda: str(_reserve(run, out_dir)), target))
    order = dict(np.random.default_rng(recipe.seed).bit_generator.state)
    return _run(run, Position(epoch=1, order_state=order))


def _reserve(run: _Run, out_dir: str | Path) -> Path:
    def write(folder: Path) -> None:
        text = absolute_encoder(run.recipe).to_toml()
        (folder / "recipe.toml").write_text(text, encoding="utf-8")
        run.corpus.encoder.save(folder)

    return lifecycle.reserve(out_dir, run.recipe.name + FOLDER_SUFFIX, write)


def pretrain_or_resume(
    recipe: str | Path | None = None,
    resume_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: PretrainEvents | None = None,
    max_minutes: float | None = None,
) -> PretrainResult:
    """`textlstm pretrain`: the recipe file's language model pretrained anew (with
    ``overrides``), or the pretraining in ``resume_dir`` resumed; exactly one of the two."""
    source = lifecycle.chosen(recipe, resume_dir, overrides, "pretrain")
    say = events or PretrainEvents()
    if isinstance(source, Path):
        say.message(f"resuming {source}")
        return resume(source, data_dir, device, events, max_minutes)
    say.message(f"pretraining {source.name}'s language model from {recipe}")
    return pretrain(source, out_dir, data_dir, device, events, max_minutes)


def resume(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: PretrainEvents | None = None,
    max_minutes: float | None = None,
) -> PretrainResult:
    """Continue a killed or interrupted pretraining from its last checkpoint; on the same
    device the result equals that of an uninterrupted run (without a time budget)."""
    return distributed.together(
        device,
        lambda world, target: _resumed(world, target, run_dir, data_dir, events, max_minutes),
    )


def _resumed(
    world: World,
    target: torch.device,
    run_dir: str | Path,
    data_dir: str | Path | None,
    events: PretrainEvents | None,
    max_minutes: float | None,
) -> PretrainResult:
    folder = checkpoint.resumable(run_dir)
    meta, tensors = load_state(folder)
    recipe = lifecycle.saved_recipe(folder)
    events = events if world.main and events is not None else PretrainEvents()  # rank 0 reports
    lifecycle.opening(recipe, target)
    saved = meta["run"]
    corpus = distributed.main_first(
        world, lambda: prepare_corpus(recipe, data_dir or saved["data_dir"]), target
    )
    if Vocab.load(folder / "vocab.json").tokens != corpus.encoder.vocab.tokens:
        raise CheckpointError(
            f"{folder}: the data now gives a different vocabulary than when this pretraining "
            "started; it cannot be resumed: pretrain again"
        )
    budget = max_minutes * 60 if max_minutes else saved["budget"]
    run = _build(recipe, corpus, target, budget, events, world)
    position = restore(meta, tensors, run.model, run.optimizer, len(run.model.directions))
    position.states = _columns(position.states, run.share(corpus.tokens).rows, world)
    run.step, run.seconds, run.tokens = saved["step"], saved["seconds"], saved["tokens"]
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    run.history = [LMEpoch(**row) for row in saved["history"]]
    run.data_dir = saved["data_dir"]
    rows = [asdict(row) for row in run.history]
    run.folder = Path(
        distributed.from_main(world, lambda: str(lifecycle.reopen(folder, rows)), target)
    )
    events.message(f"resuming {run.folder} at step {position.step:,} of epoch {position.epoch}")
    return _run(run, position)


def _build(
    recipe: Recipe,
    corpus: Corpus,
    target: torch.device,
    budget: float | None,
    events: PretrainEvents,
    world: World = SINGLE,
) -> _Run:
    model = LanguageModel(recipe.model, recipe.pretrain, len(corpus.encoder.vocab)).to(target)
    log_q = proposal(join(corpus.train), len(corpus.encoder.vocab)).to(target)
    precision = recipe.train.precision if bf16_support(target) != "none" else "fp32"
    optimizer = _adamw(model, recipe.pretrain)
    run = _Run(recipe, corpus, model, optimizer, log_q, Path(), target, precision, budget, events)
    run.world, run.steps = world, distributed.wrap(_Loss(model), world, target) or _Loss(model)
    run.scaler = grad_scaler(precision, target)
    return run


def _perplexities(run: _Run) -> str:
    values = [perplexity(run, d) for d in range(len(run.model.directions))]
    shown = f"held-out perplexity {values[0]:.1f} before training"
    return shown + (f" (backward {values[1]:.1f})" if len(values) > 1 else "")


def _absolute(data_dir: str | Path | None) -> str | None:
    root = settings.data_root(data_dir)
    return str(root.resolve()) if root else None


def _run(run: _Run, position: Position) -> PretrainResult:
    """The epochs, then the finished folder. A kill leaves the ``.partial`` folder resumable
    from its last checkpoint; Ctrl-C finishes the folder with the weights as they stand, and it
    stays resumable from its last checkpoint (``lifecycle.guarded``)."""
    if hasattr(run.events, "run_start"):  # hooks written before it existed may lack it
        run.events.run_start(run.folder, run.recipe.to_toml(), run.step)
    guard = lifecycle.Guard(
        run.folder,
        run.world,
        STATE_FILE,
        "pretrain",
        progress=lambda: "its last checkpoint",
        started=lambda: run.step > 0,
    )
    stopped = lifecycle.guarded(guard, lambda: _epochs(run, position))
    with lifecycle.completing(guard):
        return _finish(run, stopped)


def _describe(run: _Run) -> str:
    cfg, corpus = run.cfg, run.corpus
    params = sum(p.numel() for p in run.model.parameters())
    return (
        f"{corpus.tokens:,} tokens in {len(corpus.train):,} texts; {len(corpus.encoder.vocab):,} "
        f"words; {params:,} parameters; {run.steps_per_epoch:,} steps of {cfg.batch_size} x "
        f"{cfg.bptt} tokens per epoch, {cfg.directions} direction(s); device {run.target}, "
        f"{run.precision}"
        + (
            f"; {run.world.size} processes ({run.world.backend}), each reading 1/{run.world.size}"
            " of the columns"
            if run.world.many
            else ""
        )
    )


def _adamw(model: nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    # ULMFiT's betas: a shorter memory of the gradient than Adam's default 0.9
    try:
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay, fused=True
        )
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay
        )


def learning_rate(cfg: PretrainConfig, progress: float) -> float:
    """Slanted triangular (Howard & Ruder 2018): up over ``warmup_fraction`` of the run, then
    down to lr / 32; ``progress`` is the share of the run done, by steps or by the time budget."""
    cut = cfg.warmup_fraction
    p = min(max(progress, 0.0), 1.0)
    x = p / cut if cut > 0 and p < cut else 1.0 - (p - cut) / max(1e-9, 1.0 - cut)
    return cfg.lr * (1.0 + (LR_RATIO - 1) * x) / LR_RATIO


def _epochs(run: _Run, position: Position) -> str:
    cfg = run.cfg
    while position.epoch <= cfg.epochs:
        rng = order_rng(position.order_state)
        stream = join(run.corpus.train, rng.permutation(len(run.corpus.train)))
        run.events.epoch_start(position.epoch, cfg.epochs, run.steps_per_epoch)
        stopped = _train_epoch(run, stream, position)
        perplexities = [perplexity(run, d) for d in range(len(run.model.directions))]
        result = LMEpoch(
            position.epoch, position.loss / max(position.step, 1), perplexities[0],
            perplexities[1] if len(perplexities) > 1 else None,
            run.optimizer.param_groups[0]["lr"], position.seconds,
            position.tokens / max(position.seconds, 1e-9), position.step,
        )  # fmt: skip
        run.history.append(result)
        if run.world.main:
            append_text(run.folder / "metrics.jsonl", json.dumps(asdict(result)) + "\n")
        position = Position(epoch=position.epoch + 1, order_state=dict(rng.bit_generator.state))
        _checkpoint(run, position)
        run.events.lm_epoch_end(result)
        if stopped and run.budget is not None:
            run.events.message(f"stopping: the time budget of {run.budget / 60:g} min is spent")
            return "budget"
    return "completed"


def _train_epoch(run: _Run, stream: np.ndarray, position: Position) -> bool:
    """The epoch's steps from ``position`` on, which they advance; returns whether the time
    budget stopped it. A checkpoint is written every ``pretrain.checkpoint_minutes``. The ranks
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
            _checkpoint(run, position)
            saved = time.perf_counter()
        run.events.batch_end(value, window.tokens)
        if run.budget is not None and run.seconds >= run.budget:
            return True
    return False


def _agree(
    run: _Run, value: float, real: int, spent: float, due: bool
) -> tuple[float, float, bool]:
    """The whole step's loss, and rank 0's seconds and checkpoint clock, on every rank."""
    main = run.world.main
    total, rows, seconds, checkpoint_due = distributed.all_sum(
        run.world,
        [value * real, real, spent if main else 0.0, float(due and main)],
        run.target,
    )
    return total / max(rows, 1), seconds, checkpoint_due > 0


def _checkpoint(run: _Run, position: Position) -> None:
    """The resumable state, written by rank 0; the recurrent states of every rank's columns
    are gathered into it first, so any number of processes can resume it."""
    states = _gather_states(run, position.states)
    if not run.world.main:
        return
    summary = {
        "step": run.step,
        "seconds": run.seconds,
        "tokens": run.tokens,
        "budget": run.budget,
        "data_dir": run.data_dir,
        "history": [asdict(row) for row in run.history],
        "scaler": scaler_state(run.scaler),
    }
    whole = Position(**{**position.__dict__, "states": states})
    save_state(run.folder, whole, summary, run.model, run.optimizer)


def _gather_states(run: _Run, states: list[Any]) -> list[Any]:
    if not run.world.many:
        return states
    total = width(run.corpus.tokens, run.cfg.batch_size)

    def gather(t: torch.Tensor) -> torch.Tensor:  # (layers, columns, hidden), columns gathered
        local = t.detach().transpose(0, 1).float().cpu().numpy()
        whole = distributed.gather_rows(run.world, local, total, run.target)
        return torch.from_numpy(whole).transpose(0, 1).to(t.dtype).contiguous()

    return [_map_state(state, gather) for state in states]


def _columns(states: list[Any], rows: np.ndarray, world: World) -> list[Any]:
    """This rank's columns of saved recurrent states (all of them for a single process)."""
    if not world.many:
        return states
    index = torch.from_numpy(rows)
    return [_map_state(state, lambda t: t.index_select(1, index)) for state in states]


def _map_state(state: Any, fn: Any) -> Any:
    if state is None:
        return None
    return [tuple(fn(t) for t in part) if isinstance(part, tuple) else fn(part) for part in state]


def _step(run: _Run, window: Window, states: list[State | None], weight: float) -> float:
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


def perplexity(run: _Run, direction: int) -> float:
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


def _finish(run: _Run, stopped: str) -> PretrainResult:
    """The run folder made complete (by rank 0), and the result (on every rank)."""
    final = distributed.from_main(run.world, lambda: str(_complete(run, stopped)), run.target)
    return PretrainResult(Path(final), run.history, stopped, run.seconds, run.tokens)


def _complete(run: _Run, stopped: str) -> Path:
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()},
        str(run.folder / "model.safetensors"),
        metadata={"format": "textlstm-lm"},
    )
    meta = {
        "format_version": checkpoint.FORMAT_VERSION,
        "kind": "language_model",
        **checkpoint.versions(),
        "name": run.recipe.name,
        "seed": run.recipe.seed,
        "device": str(run.target),
        "processes": run.world.size,
        "precision": run.precision,
        "data_source": run.corpus.source,
        "texts": len(run.corpus.train),
        "tokens_per_epoch": run.corpus.tokens,
        "tokens_trained": run.tokens,
        "steps": run.step,
        "directions": run.cfg.directions,
        "vocab_size": len(run.corpus.encoder.vocab),
        "stopped": stopped,
        "train_seconds": round(run.seconds, 2),
        "perplexity": run.history[-1].perplexity if run.history else None,
        "started_from": absolute_encoder(run.recipe).model.encoder,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (run.folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if stopped != "interrupted":
        (run.folder / STATE_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    return checkpoint.finalize(run.folder)
