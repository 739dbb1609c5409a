"""Training: data -> vocabulary -> model -> epochs with validation and early stopping -> run folder.

The library never prints: progress goes to an ``Events`` object (the CLI's draws rich output).
Everything that can fail on user input (recipe, data, class weights) is checked before the run
folder is created, so bad input leaves nothing behind.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from textlstm import checkpoint
from textlstm.batching import bucketed_batches, iterate, lengths_of
from textlstm.data import Splits, column, data_root, load_splits
from textlstm.errors import CheckpointError, RecipeError, TextLSTMError
from textlstm.metrics import quick_scores
from textlstm.model import LSTMClassifier
from textlstm.predict import logits_for
from textlstm.recipe import Recipe, TrainConfig, load_recipe
from textlstm.training.resume import FILE as RESUME_FILE
from textlstm.training.resume import TrainState, load_state, restore, save_state
from textlstm.runtime import autocast, bf16_support, pick_device, seed_everything
from textlstm.text.encoder import Encoder
from textlstm.text.cache import Options, Preprocessed, preprocess, vectors_file
from textlstm.text.vocab import Vocab


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    validation_loss: float
    accuracy: float
    macro_f1: float
    learning_rate: float
    seconds: float
    tokens_per_second: float
    best: bool = False


@dataclass
class TrainResult:
    run_dir: Path
    metric: str
    best_epoch: int
    best_value: float
    epochs: list[EpochResult]
    stopped: str  # "completed" | "early_stopping" | "interrupted"
    seconds: float
    splits: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Events:
    """Progress hooks; the default does nothing. The CLI subclasses it to draw progress."""

    def message(self, text: str) -> None: ...

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_end(self, loss: float, tokens: int) -> None: ...

    def epoch_end(self, result: EpochResult) -> None: ...


@dataclass
class Prepared:
    splits: Splits
    encoder: Encoder
    ids: dict[str, list[np.ndarray]]
    preprocessed: Preprocessed

    @property
    def vocab(self) -> Vocab:
        return self.encoder.vocab


def prepare(recipe: Recipe, data_dir: str | Path | None = None, events: Events | None = None,
            options: Options | None = None) -> Prepared:
    """Load the splits, then get the vocabulary and the train and validation ids (reused or built)."""
    events = events or Events()
    vectors_file(recipe)  # a wrong vectors file fails before any data is read
    base = Path(recipe.source).parent if recipe.source else None
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    for note in splits.notes:
        events.message(note)
    # the test split is left alone: `evaluate` reads it from the finished run
    texts = {name: column(splits[name], "text") for name in ("train", "validation")}
    messages: list[str] = []
    done = preprocess(recipe, texts, options, messages)
    for message in messages:
        events.message(message)
    return Prepared(splits, done.encoder, done.ids, done)


def class_weights(cfg: TrainConfig, labels: list[np.ndarray] | np.ndarray, names: list[str],
                  source: str) -> torch.Tensor | None:
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        counts = np.bincount(np.asarray(labels), minlength=len(names)).astype(np.float64)
        weights = len(labels) / (len(names) * np.maximum(counts, 1.0))
        return torch.tensor(weights, dtype=torch.float32)
    unknown = [name for name in cfg.class_weights if name not in names]
    if unknown:
        raise RecipeError(f"{source or '<recipe>'}: train.class_weights: unknown label "
                          f"{unknown[0]!r}; labels are {', '.join(names)}")
    return torch.tensor([cfg.class_weights.get(n, 1.0) for n in names], dtype=torch.float32)


def lr_schedule(cfg: TrainConfig, total_steps: int):
    warmup = int(cfg.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


@dataclass
class _Setup:
    """The model and everything that updates it, built the same way for a new or resumed run."""
    model: LSTMClassifier
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_labels: np.ndarray
    val_labels: np.ndarray


def _setup(recipe: Recipe, prepared: Prepared, target: torch.device) -> _Setup:
    splits, cfg = prepared.splits, recipe.train
    train_labels = np.asarray(column(splits["train"], "label"))
    val_labels = np.asarray(column(splits["validation"], "label"))
    weights = class_weights(cfg, train_labels, splits.labels, recipe.source)
    model = LSTMClassifier(recipe.model, len(prepared.vocab), len(splits.labels))
    if prepared.preprocessed.embedding is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(prepared.preprocessed.embedding))
        model.embedding.weight.requires_grad_(not recipe.vocab.freeze_embeddings)
    model.to(target)
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(target),
                                    label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(prepared.ids["train"]) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(cfg, steps_per_epoch * cfg.epochs))
    return _Setup(model, criterion, optimizer, scheduler, train_labels, val_labels)


def train(recipe: Recipe, out_dir: str | Path = "runs", data_dir: str | Path | None = None,
          device: str = "auto", events: Events | None = None, options: Options | None = None
          ) -> TrainResult:
    """Train a new run under ``out_dir/<name>/``; each epoch leaves a resumable checkpoint."""
    events = events or Events()
    target = pick_device(device)
    rng = seed_everything(recipe.seed)
    prepared = prepare(recipe, data_dir, events, options)
    setup = _setup(recipe, prepared, target)
    precision = _describe(prepared, setup, target, events, recipe.train.precision)
    run_dir = checkpoint.reserve_run_dir(out_dir, recipe.name)
    try:  # what `--resume` reads back: the recipe, the vocabulary, the labels
        checkpoint.save_identity(run_dir, _portable(recipe, prepared.splits), prepared.encoder,
                                 prepared.splits.labels)
    except BaseException:
        checkpoint.discard(run_dir)
        raise
    state = TrainState(0, -math.inf, math.inf, 0, None, [], 0.0,
                       str(Path(data_dir).resolve()) if data_dir else None)
    return _epochs(recipe, prepared, setup, run_dir, state, rng, target, events, data_dir,
                   precision)


def resume(run_dir: str | Path, data_dir: str | Path | None = None, device: str = "auto",
           events: Events | None = None, options: Options | None = None) -> TrainResult:
    """Continue a run that was killed or interrupted, from its last finished epoch.

    With the same seed on the same device the result equals that of an uninterrupted run: the
    model, optimizer, scheduler and every random generator continue from the saved state.
    """
    events = events or Events()
    target = pick_device(device)
    run = checkpoint.resumable(run_dir)
    state, raw = load_state(run)
    try:
        recipe = load_recipe(run / "recipe.toml")
    except RecipeError as exc:
        raise CheckpointError(*exc.lines) from None
    data_dir = data_dir or state.data_dir
    rng = seed_everything(recipe.seed)
    prepared = prepare(recipe, data_dir, events, options)
    checkpoint.check_identity(run, prepared.encoder, prepared.splits.labels)
    setup = _setup(recipe, prepared, target)
    restore(raw, setup.model, setup.optimizer, setup.scheduler, rng)
    run = checkpoint.reopen(run)  # only now: a resume that fails above leaves the run as it was
    with open(run / "metrics.jsonl", "w", encoding="utf-8") as log:  # drop a half-logged epoch
        log.writelines(json.dumps(row) + "\n" for row in state.history)
    events.message(f"resuming {run} after epoch {state.epoch} of {recipe.train.epochs}")
    precision = "fp32" if bf16_support(target) == "none" else recipe.train.precision
    return _epochs(recipe, prepared, setup, run, state, rng, target, events, data_dir, precision)


def _describe(prepared: Prepared, setup: _Setup, target: torch.device, events: Events,
              precision: str) -> str:
    """Says what trains where; returns the precision the run trains in: bf16 falls back to fp32
    on a CPU that has no bf16 recurrent kernel."""
    support = bf16_support(target) if precision == "bf16" else "native"
    if support == "none":
        precision = "fp32"
    events.message(f"{len(prepared.vocab):,} words in the vocabulary; "
                   f"{sum(p.numel() for p in setup.model.parameters()):,} parameters; "
                   f"device {target}, {precision}")
    if support == "emulated":
        events.message(f"train.precision = \"bf16\": {target} has no native bfloat16 "
                       "(avx512_bf16/AMX or a GPU from Ampere on), so bf16 is emulated and slower "
                       "than fp32 here; --set 'train.precision=\"fp32\"' trains in fp32")
    elif support == "none":
        events.message(f"train.precision = \"bf16\": {target} has no bfloat16 kernels for the "
                       "LSTM and GRU (they need AVX-512 or AMX), so this run trains in fp32")
    return precision


def _epochs(recipe: Recipe, prepared: Prepared, setup: _Setup, run_dir: Path, state: TrainState,
            rng: np.random.Generator, target: torch.device, events: Events,
            data_dir: str | Path | None, precision: str) -> TrainResult:
    cfg, splits = recipe.train, prepared.splits
    model, optimizer, scheduler = setup.model, setup.optimizer, setup.scheduler
    train_ids, val_ids = prepared.ids["train"], prepared.ids["validation"]
    train_lengths = lengths_of(train_ids)
    history = [EpochResult(**row) for row in state.history]
    stopped = "completed"
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if cfg.patience and state.epoch - state.best_epoch >= cfg.patience:
                stopped = "early_stopping"  # a resumed run that had already stopped early
                break
            batches = bucketed_batches(train_lengths, cfg.batch_size, cfg.bucket_size, rng)
            events.epoch_start(epoch, cfg.epochs, len(batches))
            tick = time.perf_counter()
            model.train()
            total_loss, total_rows, total_tokens = 0.0, 0, 0
            for rows, tokens, lengths in iterate(train_ids, batches):
                targets = torch.from_numpy(setup.train_labels[rows]).to(target)
                with autocast(target, precision):
                    logits = model(tokens.to(target), lengths.to(target))  # (batch, num_classes)
                loss = setup.criterion(logits.float(), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise TextLSTMError(f"the training loss became {value} in epoch {epoch}; "
                                        "lower train.lr or raise train.clip_grad_norm")
                count = int(lengths.sum())
                total_loss += value * len(rows)
                total_rows += len(rows)
                total_tokens += count
                events.batch_end(value, count)
            train_seconds = time.perf_counter() - tick
            val_logits = logits_for(model, val_ids, cfg.eval_batch_size, target, precision)
            val_loss = float(nn.functional.cross_entropy(
                torch.from_numpy(val_logits), torch.from_numpy(setup.val_labels)))
            accuracy, macro_f1 = quick_scores(setup.val_labels, val_logits.argmax(1),
                                              len(splits.labels))
            value = accuracy if cfg.metric == "accuracy" else macro_f1
            # a tie on the metric (common on small validation sets) goes to a clearly lower loss
            better = cfg.keep == "last" or value > state.best_value or (
                value == state.best_value and val_loss < state.best_loss - 1e-4)
            result = EpochResult(epoch, total_loss / max(total_rows, 1), val_loss, accuracy,
                                 macro_f1, scheduler.get_last_lr()[0],
                                 time.perf_counter() - tick, total_tokens / train_seconds,
                                 best=better)
            if better:
                state.best_value, state.best_loss, state.best_epoch = value, val_loss, epoch
                state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.append(result)
            state.epoch, state.history = epoch, [asdict(r) for r in history]
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(result)) + "\n")
            state.seconds += time.perf_counter() - tick
            save_state(run_dir, state, model, optimizer, scheduler, rng)
            events.epoch_end(result)
            if cfg.patience and epoch - state.best_epoch >= cfg.patience and epoch < cfg.epochs:
                stopped = "early_stopping"
                events.message(f"stopping early: no better validation {cfg.metric} for "
                               f"{cfg.patience} epoch(s)")
                break
    except KeyboardInterrupt:
        if state.best_state is None:  # not one epoch finished, in this session or before
            if not (run_dir / RESUME_FILE).exists():
                checkpoint.discard(run_dir)
            raise
        stopped = "interrupted"
    except BaseException:
        if not (run_dir / RESUME_FILE).exists():  # a run with a finished epoch stays resumable
            checkpoint.discard(run_dir)
        raise
    assert state.best_state is not None
    seconds = state.seconds  # finished epochs only, over every session of this run
    meta = {"name": recipe.name, "seed": recipe.seed, "device": str(target),
            "data_source": splits.source, "data_fingerprint": splits.fingerprint(),
            "data_dir": _mirror_root(recipe, data_dir),
            "split_rows": {name: len(splits[name]) for name in splits.names},
            "vocabulary": {"origin": prepared.preprocessed.vocab_origin,
                           "key": prepared.preprocessed.vocab_key,
                           "vectors_coverage": (asdict(prepared.preprocessed.coverage)
                                                if prepared.preprocessed.coverage else None)},
            "metric": cfg.metric, "precision": precision, "best_epoch": state.best_epoch,
            "stopped": stopped,
            "validation": asdict(history[state.best_epoch - 1]),
            "train_seconds": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    checkpoint.save(run_dir, model, state.best_state, _portable(recipe, splits), prepared.encoder,
                    splits.labels, meta)
    if stopped != "interrupted":
        (run_dir / RESUME_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    final = checkpoint.finalize(run_dir)
    if stopped == "interrupted":
        events.message(f"interrupted: kept the best weights so far (epoch {state.best_epoch}) in "
                       f"{final}; continue with: textlstm train --resume {final}")
    return TrainResult(final, cfg.metric, state.best_epoch, state.best_value, history, stopped,
                       seconds, splits.names, splits.notes)


def _portable(recipe: Recipe, splits: Splits) -> Recipe:
    """The recipe as saved in the run folder: local paths made absolute, so they still point at
    the same files when the recipe is read from inside the run folder."""
    if splits.local_path:
        recipe = recipe.model_copy(update={
            "data": recipe.data.model_copy(update={"dataset": splits.local_path})})
    paths = {key: str(Path(recipe.resolve_path(value)).resolve())
             for key in ("path", "vectors") if (value := getattr(recipe.vocab, key)) is not None}
    return recipe.model_copy(update={"vocab": recipe.vocab.model_copy(update=paths)}) if paths \
        else recipe


def _mirror_root(recipe: Recipe, data_dir: str | Path | None) -> str | None:
    """The mirror root the data came from, so evaluate can find it again without --data-dir."""
    root = data_root(data_dir)
    if root is None or not (root / recipe.data.dataset).exists():
        return None
    return str(root.resolve())
