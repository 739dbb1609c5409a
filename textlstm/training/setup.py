"""What a run trains: the data prepared (splits, vocabulary, ids), and the model with the loss,
optimizer and learning-rate schedule that update it, built the same way for a new or a resumed
run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from textlstm.data import Splits, column, load_splits
from textlstm.errors import RecipeError
from textlstm.model import LSTMClassifier
from textlstm.recipe import Recipe, TrainConfig
from textlstm.text.cache import Options, Preprocessed, preprocess, vectors_file
from textlstm.text.encoder import Encoder
from textlstm.text.vocab import Vocab
from textlstm.training.events import Events
from textlstm.training.loop import Fit


@dataclass
class Prepared:
    splits: Splits
    encoder: Encoder
    ids: dict[str, list[np.ndarray]]
    preprocessed: Preprocessed

    @property
    def vocab(self) -> Vocab:
        return self.encoder.vocab


def prepare(
    recipe: Recipe,
    data_dir: str | Path | None = None,
    events: Events | None = None,
    options: Options | None = None,
) -> Prepared:
    """Load the splits, then the vocabulary and the train and validation ids (reused or built)."""
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


def class_weights(
    cfg: TrainConfig, labels: list[np.ndarray] | np.ndarray, names: list[str], source: str
) -> torch.Tensor | None:
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        counts = np.bincount(np.asarray(labels), minlength=len(names)).astype(np.float64)
        weights = len(labels) / (len(names) * np.maximum(counts, 1.0))
        return torch.tensor(weights, dtype=torch.float32)
    unknown = [name for name in cfg.class_weights if name not in names]
    if unknown:
        raise RecipeError(
            f"{source or '<recipe>'}: train.class_weights: unknown label "
            f"{unknown[0]!r}; labels are {', '.join(names)}"
        )
    return torch.tensor([cfg.class_weights.get(n, 1.0) for n in names], dtype=torch.float32)


def lr_schedule(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = int(cfg.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def build_fit(recipe: Recipe, prepared: Prepared, target: torch.device) -> Fit:
    """The model, loss, optimizer and schedule: built the same way for a new or resumed run."""
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
    criterion = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(target), label_smoothing=cfg.label_smoothing
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    steps_per_epoch = math.ceil(len(prepared.ids["train"]) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(cfg, steps_per_epoch * cfg.epochs)
    )
    return Fit(model, criterion, optimizer, scheduler, train_labels, val_labels, len(splits.labels))
