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
from textlstm.errors import RecipeError, TextLSTMError
from textlstm.metrics import quick_scores
from textlstm.model import LSTMClassifier
from textlstm.predict import logits_for
from textlstm.recipe import Recipe, TrainConfig
from textlstm.runtime import pick_device, seed_everything
from textlstm.encoder import Encoder
from textlstm.preprocess import Options, Preprocessed, preprocess, vectors_file
from textlstm.vocab import Vocab


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


def train(recipe: Recipe, out_dir: str | Path = "runs", data_dir: str | Path | None = None,
          device: str = "auto", events: Events | None = None, options: Options | None = None
          ) -> TrainResult:
    events = events or Events()
    started = time.perf_counter()
    target = pick_device(device)
    rng = seed_everything(recipe.seed)
    prepared = prepare(recipe, data_dir, events, options)
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
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_ids, val_ids = prepared.ids["train"], prepared.ids["validation"]
    train_lengths = lengths_of(train_ids)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(cfg, steps_per_epoch * cfg.epochs))
    events.message(f"{len(prepared.vocab):,} words in the vocabulary; "
                   f"{sum(p.numel() for p in model.parameters()):,} parameters; device {target}")

    run_dir = checkpoint.reserve_run_dir(out_dir, recipe.name)
    history: list[EpochResult] = []
    best_value, best_loss, best_epoch, best_state = -math.inf, math.inf, 0, None
    stopped = "completed"
    try:
        for epoch in range(1, cfg.epochs + 1):
            batches = bucketed_batches(train_lengths, cfg.batch_size, cfg.bucket_size, rng)
            events.epoch_start(epoch, cfg.epochs, len(batches))
            tick = time.perf_counter()
            model.train()
            total_loss, total_rows, total_tokens = 0.0, 0, 0
            for rows, tokens, lengths in iterate(train_ids, batches):
                targets = torch.from_numpy(train_labels[rows]).to(target)
                logits = model(tokens.to(target), lengths.to(target))  # (batch, num_classes)
                loss = criterion(logits, targets)
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
            val_logits = logits_for(model, val_ids, cfg.eval_batch_size, target)
            val_loss = float(nn.functional.cross_entropy(
                torch.from_numpy(val_logits), torch.from_numpy(val_labels)))
            accuracy, macro_f1 = quick_scores(val_labels, val_logits.argmax(1), len(splits.labels))
            value = accuracy if cfg.metric == "accuracy" else macro_f1
            # a tie on the metric (common on small validation sets) goes to a clearly lower loss
            better = value > best_value or (value == best_value and val_loss < best_loss - 1e-4)
            result = EpochResult(epoch, total_loss / max(total_rows, 1), val_loss, accuracy,
                                 macro_f1, scheduler.get_last_lr()[0],
                                 time.perf_counter() - tick, total_tokens / train_seconds,
                                 best=better)
            if better:
                best_value, best_loss, best_epoch = value, val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.append(result)
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(result)) + "\n")
            events.epoch_end(result)
            if cfg.patience and epoch - best_epoch >= cfg.patience and epoch < cfg.epochs:
                stopped = "early_stopping"
                events.message(f"stopping early: no better validation {cfg.metric} for "
                               f"{cfg.patience} epoch(s)")
                break
    except KeyboardInterrupt:
        if best_state is None:
            checkpoint.discard(run_dir)
            raise
        stopped = "interrupted"
        events.message(f"interrupted: keeping the best weights so far (epoch {best_epoch})")
    except BaseException:
        checkpoint.discard(run_dir)
        raise
    assert best_state is not None
    seconds = time.perf_counter() - started
    meta = {"name": recipe.name, "seed": recipe.seed, "device": str(target),
            "data_source": splits.source, "data_fingerprint": splits.fingerprint(),
            "data_dir": _mirror_root(recipe, data_dir),
            "split_rows": {name: len(splits[name]) for name in splits.names},
            "vocabulary": {"origin": prepared.preprocessed.vocab_origin,
                           "key": prepared.preprocessed.vocab_key,
                           "vectors_coverage": (asdict(prepared.preprocessed.coverage)
                                                if prepared.preprocessed.coverage else None)},
            "metric": cfg.metric, "best_epoch": best_epoch, "stopped": stopped,
            "validation": asdict(history[best_epoch - 1]), "train_seconds": round(seconds, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    recipe = _portable(recipe, splits)
    checkpoint.save(run_dir, model, best_state, recipe, prepared.encoder, splits.labels, meta)
    final = checkpoint.finalize(run_dir)
    return TrainResult(final, cfg.metric, best_epoch, best_value, history, stopped, seconds,
                       splits.names, splits.notes)


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
