"""What a run trains: the data prepared (splits, vocabulary, ids), and the model with the loss,
optimizer and learning-rate schedule that update it, built the same way for a new or a resumed
run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm.data import Splits, column, load_splits, texts_of
from textlstm.errors import RecipeError
from textlstm.model.classifier import LSTMClassifier
from textlstm.model.wide import fit as fit_linear
from textlstm.recipe import AUTO_MIN_EPOCHS, Recipe, TrainConfig
from textlstm.run.decision import multi_hot
from textlstm.runtime import grad_scaler
from textlstm.text.cache import Options, Preprocessed, preprocess, text_settings, vectors_file
from textlstm.text.encoder import Encoder
from textlstm.text.vocab import Ragged, Vocab
from textlstm.training import distributed
from textlstm.training.distributed import SINGLE, World
from textlstm.training.events import Events
from textlstm.training.loop import Fit, moving_average
from textlstm.training.transfer import encoder_folder, load_encoder, with_encoder


@dataclass
class Prepared:
    splits: Splits
    encoder: Encoder
    ids: dict[str, Ragged]
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
    # model.encoder: the language model's vocabulary, after checking it fits the recipe
    text = text_settings(with_encoder(recipe))
    vectors_file(text_settings(recipe))  # a wrong vectors file fails before any data is read
    base = Path(recipe.source).parent if recipe.source else None
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    for note in splits.notes:
        events.message(note)
    # the test split is left alone: `evaluate` reads it from the finished run
    texts = {name: texts_of(splits[name]) for name in ("train", "validation")}
    messages: list[str] = []
    done = preprocess(text, texts, options, messages)
    for message in messages:
        events.message(message)
    return Prepared(splits, done.encoder, done.ids, done)


def label_array(ds: Any, splits: Splits) -> np.ndarray:
    """A split's targets: class ids (rows,), or for multi-label data (rows, labels) 0/1 floats."""
    values = column(ds, "label")
    return multi_hot(values, len(splits.labels)) if splits.multi_label else np.asarray(values)


def class_weights(
    cfg: TrainConfig, labels: np.ndarray, names: list[str], source: str
) -> torch.Tensor | None:
    """Each class's weight in the loss; for multi-label targets (rows, labels), each label's
    positives' weight against its negatives (BCE's pos_weight)."""
    if cfg.class_weights == "none":
        return None
    given = cfg.class_weights
    if isinstance(given, str):
        if labels.ndim == 2:
            positives = labels.sum(axis=0).astype(np.float64)
            weights = (len(labels) - positives) / np.maximum(positives, 1.0)
            if given == "sqrt":
                weights = np.sqrt(weights)
        else:
            counts = np.bincount(labels, minlength=len(names)).astype(np.float64)
            weights = len(labels) / (len(names) * np.maximum(counts, 1.0))
            if given == "sqrt":  # scaled so that the rows' mean weight is 1
                weights = np.sqrt(weights)
                weights *= len(labels) / float((weights * counts).sum())
        return torch.tensor(weights, dtype=torch.float32)
    unknown = [name for name in given if name not in names]
    if unknown:
        raise RecipeError(
            f"{source or '<recipe>'}: train.class_weights: unknown label "
            f"{unknown[0]!r}; labels are {', '.join(names)}"
        )
    return torch.tensor([given.get(n, 1.0) for n in names], dtype=torch.float32)


def lr_schedule(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = int(cfg.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def layer_groups(model: LSTMClassifier) -> list[tuple[int, list[nn.Parameter]]]:
    """(depth, trainable parameters): the head (with the n-gram bag and attention) at depth 0,
    each recurrent layer (both directions) below it, the embedding at the bottom."""
    layers = len(model.forward_layers)
    below = {id(model.embedding.weight): layers + 1}
    for i in range(layers):
        stack = [model.forward_layers[i]] + (
            [model.backward_layers[i]] if len(model.backward_layers) else []
        )
        below.update({id(p): layers - i for part in stack for p in part.parameters()})
    groups: dict[int, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(below.get(id(p), 0), []).append(p)
    return sorted(groups.items())


def unfrozen(
    schedule: Callable[[int], float], depth: int, steps_per_epoch: int, mode: str
) -> Callable[[int], float]:
    """The schedule, held at 0 until the group's epoch comes ("gradual": depth d from epoch
    d + 1 on)."""
    if mode == "all" or depth == 0:
        return schedule
    start = depth * steps_per_epoch
    return lambda step: schedule(step) if step >= start else 0.0


def adamw(params: list[Any], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with its fused kernel where this torch has one for the device: one pass over each
    tensor instead of a dozen, which matters for large embedding tables (a 262,144-row n-gram
    table's update measured 7.7x faster on 2 CPU cores). The state is the same either way."""
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def plan_epochs(recipe: Recipe, prepared: Prepared, events: Events | None = None) -> Recipe:
    """The recipe with ``train.epochs`` a number: "auto" becomes enough epochs for about
    ``train.steps`` optimizer steps on this data (see ``TrainConfig.planned_epochs``)."""
    cfg = recipe.train
    if isinstance(cfg.epochs, int):
        return recipe
    per_epoch = math.ceil(len(prepared.ids["train"]) / cfg.batch_size)
    planned = cfg.planned_epochs(per_epoch)
    if events is not None:
        events.message(
            f'train.epochs = "auto": {planned} epochs of {per_epoch:,} steps '
            f"(aiming at {cfg.steps:,} steps, {min(AUTO_MIN_EPOCHS, cfg.max_epochs)} to "
            f"{cfg.max_epochs} epochs); early stopping after {cfg.patience} epoch(s) without "
            f"a better validation {cfg.metric}"
            if cfg.patience
            else f'train.epochs = "auto": {planned} epochs of {per_epoch:,} steps'
        )
    return recipe.model_copy(update={"train": cfg.model_copy(update={"epochs": planned})})


def build_fit(
    recipe: Recipe, prepared: Prepared, target: torch.device, world: World = SINGLE
) -> Fit:
    """The model, loss, optimizer and schedule: built the same way for a new or resumed run
    (and on every rank of a distributed one, whose model DDP wraps)."""
    splits, cfg = prepared.splits, recipe.train
    train_labels = label_array(splits["train"], splits)
    val_labels = label_array(splits["validation"], splits)
    weights = class_weights(cfg, train_labels, splits.labels, recipe.source)
    check_label_settings(recipe, splits.multi_label)
    model = LSTMClassifier(recipe.model, len(prepared.vocab), len(splits.labels))
    if prepared.preprocessed.embedding is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(prepared.preprocessed.embedding))
        model.embedding.weight.requires_grad_(not recipe.vocab.freeze_embeddings)
    folder = encoder_folder(recipe)
    if folder is not None:
        load_encoder(model, folder)
    model.to(target)
    criterion = loss_for(cfg, splits.multi_label, None if weights is None else weights.to(target))
    groups = layer_groups(model)
    optimizer = adamw(
        [{"params": group, "lr": cfg.lr / cfg.layer_lr_decay**depth} for depth, group in groups],
        cfg,
    )
    steps_per_epoch = math.ceil(len(prepared.ids["train"]) / cfg.batch_size)
    schedule = lr_schedule(cfg, steps_per_epoch * cfg.total_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [unfrozen(schedule, depth, steps_per_epoch, cfg.unfreeze) for depth, _ in groups],
    )
    # the average copies the model before DDP wraps it (and hooks its parameters)
    average = moving_average(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return Fit(
        model,
        criterion,
        optimizer,
        scheduler,
        train_labels,
        val_labels,
        len(splits.labels),
        world,
        distributed.wrap(model, world, target),
        grad_scaler(cfg.precision, target),
        average,
        splits.multi_label,
        cfg.thresholds,
        cfg.threshold_shrink,
        cfg.metric,
    )


def loss_for(cfg: TrainConfig, multi_label: bool, weights: torch.Tensor | None) -> nn.Module:
    """Cross-entropy over the classes, or for multi-label data a binary cross-entropy per label
    (a sigmoid head: each label is present or not on its own)."""
    if multi_label:
        return nn.BCEWithLogitsLoss(pos_weight=weights)
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)


def check_label_settings(recipe: Recipe, multi_label: bool) -> None:
    """Settings that fit one shape of labels only, refused in one line before anything runs."""
    cfg, where = recipe.train, recipe.source or "<recipe>"
    if multi_label and cfg.label_smoothing > 0:
        raise RecipeError(
            f"{where}: train.label_smoothing: spreads one class's probability over the others, "
            "which multi-label data does not have; set it to 0"
        )
    if multi_label and cfg.sampler == "balanced":
        raise RecipeError(
            f'{where}: train.sampler = "balanced" draws rows by their one class; for '
            'multi-label data use train.class_weights = "balanced" instead'
        )


def fit_wide(fit: Fit, prepared: Prepared, events: Events) -> float:
    """``model.wide``: fit the linear model on the training ids before the network trains;
    returns the seconds it took (0 without one)."""
    wide = getattr(fit.model, "wide", None)
    if wide is None:
        return 0.0
    ids = prepared.ids
    done = fit_linear(wide, ids["train"], fit.train_labels, ids["validation"], fit.val_labels)
    score = (
        f"loss {done.validation_loss:.4f}"
        if fit.multi_label
        else f"{done.validation_accuracy:.2%} accuracy"
    )
    texts = (
        "the training texts"
        if done.rows == done.of_rows
        else f"a sample of {done.rows:,} of the {done.of_rows:,} training texts"
    )
    events.message(
        f"model.wide: naive Bayes logistic regression on {done.features:,} n-grams of "
        f"{texts}, C = {done.c:g} (chosen on validation: {score} alone), {done.seconds:.0f} s"
    )
    return done.seconds
