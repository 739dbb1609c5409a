"""A training run: data -> vocabulary -> model -> the epoch loop -> run folder.

The library never prints: progress goes to an ``Events`` object (the CLI's draws rich output).
Everything that can fail on user input (recipe, data, class weights) is checked before the run
folder is created, so bad input leaves nothing behind. After each epoch the run folder holds a
resumable checkpoint; this module decides what to keep and when to stop, ``loop`` runs epochs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm import settings, threads
from textlstm.data import Splits, data_root
from textlstm.files import append_text
from textlstm.model.classifier import logits_for
from textlstm.model.directions import lanes_of
from textlstm.model.wide import WideNgrams, fit_scale, linear_scores, network_alone
from textlstm.recipe import Recipe
from textlstm.run import checkpoint
from textlstm.run.decision import CALIBRATION_ROWS, Decision, calibrated
from textlstm.run.metrics import report
from textlstm.runtime import bf16_support
from textlstm.text.cache import Options
from textlstm.training import distributed, lifecycle
from textlstm.training.distributed import World
from textlstm.training.events import EpochResult, Events, TrainResult
from textlstm.training.loop import Fit, epochs, validation_scores
from textlstm.training.setup import Prepared, build_fit, fit_wide, plan_epochs, prepare
from textlstm.training.state import FILE as RESUME_FILE
from textlstm.training.state import TrainState, load_state, restore, save_state
from textlstm.training.transfer import absolute_encoder


@dataclass
class _Run:
    """One training run in progress: what it trains, where, and how far it got."""

    recipe: Recipe
    prepared: Prepared
    fit: Fit
    folder: Path
    state: TrainState
    rng: np.random.Generator
    target: torch.device
    precision: str
    events: Events
    data_dir: str | Path | None
    world: World
    saved: int = -1  # the last epoch whose checkpoint is on disk (-1: the state's epoch)


def train(
    recipe: Recipe,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: Events | None = None,
    options: Options | None = None,
) -> TrainResult:
    """Train a new run under ``out_dir/<name>/``; each epoch leaves a resumable checkpoint.

    Launched by torchrun (or with a process group open), every process calls this and they train
    one model together with DistributedDataParallel; rank 0 alone writes the run folder and
    reports progress (see ``textlstm.training.distributed``)."""
    return distributed.together(
        device,
        lambda world, target: _new(recipe, out_dir, data_dir, target, world, events, options),
    )


def _new(
    recipe: Recipe,
    out_dir: str | Path,
    data_dir: str | Path | None,
    target: torch.device,
    world: World,
    events: Events | None,
    options: Options | None,
) -> TrainResult:
    events = events if world.main and events is not None else Events()  # rank 0 reports
    rng = lifecycle.opening(recipe, target)
    prepared = distributed.main_first(
        world, lambda: prepare(recipe, data_dir, events, options), target
    )
    recipe = plan_epochs(recipe, prepared, events)  # the run folder keeps the planned number
    fit = build_fit(recipe, prepared, target, world)
    precision = _describe(prepared, fit, target, events, recipe.train.precision)
    wide_seconds = fit_wide(fit, prepared, events)  # model.wide: before the network trains
    folder = Path(
        distributed.from_main(world, lambda: str(_reserve(recipe, prepared, out_dir)), target)
    )
    state = TrainState(
        0,
        -math.inf,
        math.inf,
        0,
        None,
        [],
        wide_seconds,
        str(root.resolve()) if (root := settings.data_root(data_dir)) else None,
    )
    return _train(
        _Run(recipe, prepared, fit, folder, state, rng, target, precision, events, data_dir, world)
    )


def _reserve(recipe: Recipe, prepared: Prepared, out_dir: str | Path) -> Path:
    """A new ``.partial`` run folder holding what ``resume`` reads back: the recipe, the
    vocabulary, the labels."""
    portable, splits = _portable(recipe, prepared.splits), prepared.splits
    return lifecycle.reserve(
        out_dir,
        recipe.name,
        lambda folder: checkpoint.save_identity(folder, portable, prepared.encoder, splits.labels),
    )


def train_or_resume(
    recipe: str | Path | None = None,
    resume_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: Events | None = None,
    options: Options | None = None,
) -> TrainResult:
    """`textlstm train`: the recipe file trained anew (with ``overrides``), or the run folder
    ``resume_dir`` resumed; exactly one of the two."""
    source, say = lifecycle.chosen(recipe, resume_dir, overrides, "train"), events or Events()
    if isinstance(source, Path):
        say.message(f"resuming {source}")
        return resume(source, data_dir, device, events, options)
    say.message(f"training {source.name} from {recipe}")
    return train(source, out_dir, data_dir, device, events, options)


def resume(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: Events | None = None,
    options: Options | None = None,
) -> TrainResult:
    """Continue a run that was killed or interrupted, from its last finished epoch.

    With the same seed on the same device the result equals that of an uninterrupted run: the
    model, optimizer, scheduler and every random generator continue from the saved state. A
    distributed run resumes under torchrun like it started (any number of processes).
    """
    return distributed.together(
        device, lambda world, target: _resumed(run_dir, data_dir, target, world, events, options)
    )


def _resumed(
    run_dir: str | Path,
    data_dir: str | Path | None,
    target: torch.device,
    world: World,
    events: Events | None,
    options: Options | None,
) -> TrainResult:
    folder = checkpoint.resumable(run_dir)
    state, raw = load_state(folder)
    recipe = lifecycle.saved_recipe(folder)
    events = events if world.main and events is not None else Events()  # rank 0 reports
    rng = lifecycle.opening(recipe, target)
    data_dir = data_dir or state.data_dir
    prepared = distributed.main_first(
        world, lambda: prepare(recipe, data_dir, events, options), target
    )
    recipe = plan_epochs(recipe, prepared)  # a run folder's recipe has its epochs planned already
    checkpoint.check_identity(folder, prepared.encoder, prepared.splits.labels)
    fit = build_fit(recipe, prepared, target, world)
    restore(raw, fit.model, fit.optimizer, fit.scheduler, rng, fit.scaler, fit.average)
    # only now: a resume that fails above leaves the folder as it was
    reopened = distributed.from_main(
        world, lambda: str(lifecycle.reopen(folder, state.history)), target
    )
    folder = Path(reopened)
    events.message(f"resuming {folder} after epoch {state.epoch} of {recipe.train.total_epochs}")
    precision = "fp32" if bf16_support(target) == "none" else recipe.train.precision
    return _train(
        _Run(recipe, prepared, fit, folder, state, rng, target, precision, events, data_dir, world)
    )


def _describe(
    prepared: Prepared, fit: Fit, target: torch.device, events: Events, precision: str
) -> str:
    """Says what trains where; returns the precision the run trains in: bf16 falls back to fp32
    on a CPU that has no bf16 recurrent kernel."""
    from textlstm.errors import param, say

    threads.for_run(fit.world.many)
    support = bf16_support(target) if precision == "bf16" else "native"
    if support == "none":
        precision = "fp32"
    events.message(
        f"{len(prepared.vocab):,} words in the vocabulary; "
        f"{sum(p.numel() for p in fit.model.parameters()):,} parameters; "
        f"device {target}{threads.device_note(target)}{_lanes_note(fit.model, target)}, "
        f"{precision}{_spread(fit.world)}"
    )
    if support == "emulated":
        fp32 = 'train.precision="fp32"'
        events.message(
            say(
                f'train.precision = "bf16": {target} has no native bfloat16 '
                "(avx512_bf16/AMX or a GPU from Ampere on), so bf16 is emulated and "
                f"slower than fp32 here; {param('overrides', fp32)} trains in fp32"
            )
        )
    elif support == "none":
        events.message(
            f'train.precision = "bf16": {target} has no bfloat16 kernels for the '
            "LSTM and GRU (they need AVX-512 or AMX), so this run trains in fp32"
        )
    return precision


def _lanes_note(model: torch.nn.Module, target: torch.device) -> str:
    split = lanes_of(model, target)
    return f", the two directions side by side ({split[0]} + {split[1]})" if split else ""


def _spread(world: World) -> str:
    if not world.many:
        return ""
    return (
        f"; {world.size} processes ({world.backend}), each computing 1/{world.size} of every batch"
    )


def _train(run: _Run) -> TrainResult:
    """The epochs, then the finished run folder. A kill, a crash, a divergence or a refused
    write after the first finished epoch leaves the folder resumable; Ctrl-C keeps the best
    weights so far (``lifecycle.guarded``)."""
    if hasattr(run.events, "run_start"):  # hooks written before it existed may lack it
        run.events.run_start(run.folder, run.recipe.to_toml())
    run.saved = run.state.epoch if run.saved < 0 else run.saved
    guard = lifecycle.Guard(
        run.folder,
        run.world,
        RESUME_FILE,
        "train",
        progress=lambda: f"epoch {run.saved}",
        started=lambda: run.state.best_state is not None,
    )
    stopped = lifecycle.guarded(guard, lambda: _fit(run))
    with lifecycle.completing(guard):
        return _finish(run, stopped)


def _fit(run: _Run) -> str:
    """Runs the loop from the run's last finished epoch; returns how it stopped."""
    cfg, state = run.recipe.train, run.state
    if (
        cfg.patience
        and state.epoch - state.best_epoch >= cfg.patience
        and state.epoch < cfg.total_epochs
    ):
        return "early_stopping"  # a resumed run that had already stopped early
    history = [EpochResult(**row) for row in state.history]
    ids = run.prepared.ids
    for result in epochs(
        run.fit,
        ids["train"],
        ids["validation"],
        cfg,
        state.epoch + 1,
        run.rng,
        run.target,
        run.precision,
        run.events,
    ):
        result.best = _keep_if_better(run, result)
        history.append(result)
        state.epoch, state.history = result.epoch, [asdict(r) for r in history]
        state.seconds += result.seconds
        if run.world.main:
            append_text(run.folder / "metrics.jsonl", json.dumps(asdict(result)) + "\n")
            fit = run.fit
            save_state(
                run.folder,
                state,
                fit.model,
                fit.optimizer,
                fit.scheduler,
                run.rng,
                fit.scaler,
                fit.average,
            )
        run.saved = result.epoch
        run.events.epoch_end(result)
        if (
            cfg.patience
            and result.epoch - state.best_epoch >= cfg.patience
            and result.epoch < cfg.total_epochs
        ):
            run.events.message(
                f"stopping early: no better validation {cfg.metric} for {cfg.patience} epoch(s)"
            )
            return "early_stopping"
    return "completed"


def _keep_if_better(run: _Run, result: EpochResult) -> bool:
    """Whether this epoch's weights are the ones to keep (and keeps them)."""
    cfg, state = run.recipe.train, run.state
    value = result.metric(cfg.metric)
    # a tie on the metric (common on small validation sets) goes to a clearly lower loss
    better = (
        cfg.keep == "last"
        or value > state.best_value
        or (value == state.best_value and result.validation_loss < state.best_loss - 1e-4)
    )
    if better:
        state.best_value, state.best_loss = value, result.validation_loss
        state.best_epoch = result.epoch
        weights = run.fit.evaluated.state_dict()
        state.best_state = {k: v.detach().clone() for k, v in weights.items()}
    return better


def _finish(run: _Run, stopped: str) -> TrainResult:
    """The run folder made complete (by rank 0), and the run's result (on every rank)."""
    recipe, state, splits = run.recipe, run.state, run.prepared.splits
    final = Path(distributed.from_main(run.world, lambda: str(_complete(run, stopped)), run.target))
    if stopped == "interrupted":
        run.events.message(
            f"interrupted: kept the best weights so far (epoch {state.best_epoch}) "
            f"in {final}; it can be resumed"
        )
    return TrainResult(
        final,
        recipe.train.metric,
        state.best_epoch,
        state.best_value,
        [EpochResult(**row) for row in state.history],
        stopped,
        state.seconds,
        splits.names,
        splits.notes,
    )


def _complete(run: _Run, stopped: str) -> Path:
    """Best weights, meta.json, plots, and the folder's final name."""
    recipe, state, splits = run.recipe, run.state, run.prepared.splits
    assert state.best_state is not None
    history = [EpochResult(**row) for row in state.history]
    meta = _meta(run, stopped, history)
    if getattr(run.fit.model, "wide", None) is not None:
        meta.update(_join_wide(run))
    decision = _decision(run)
    checkpoint.save(
        run.folder,
        run.fit.model,
        state.best_state,
        _portable(recipe, splits),
        run.prepared.encoder,
        splits.labels,
        meta,
        decision,
    )
    _plots(run, history)
    if stopped != "interrupted":
        (run.folder / RESUME_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    return checkpoint.finalize(run.folder)


def _best_logits(run: _Run) -> np.ndarray:
    """The validation logits (rows, classes) of the kept weights."""
    assert run.state.best_state is not None
    run.fit.model.load_state_dict(run.state.best_state)
    ids, batch = run.prepared.ids["validation"], run.recipe.train.eval_batch_size
    return logits_for(run.fit.model, ids, batch, run.target, run.precision)


def _decision(run: _Run) -> Decision:
    """How the kept weights' logits become scores and labels, fitted on the validation split:
    the temperature, and the thresholds (multi-label) or the conformal scores (single-label)."""
    fit, held_out = run.fit, not run.recipe.data.train_on_validation
    logits = _best_logits(run)
    decision = calibrated(
        logits,
        fit.val_labels,
        fit.multi_label,
        fit.thresholds,
        fit.metric,
        held_out,
        fit.threshold_shrink,
    )
    temperatures = sorted(decision.temperature)
    if not held_out:
        run.events.message(
            "calibration: none, since the validation rows were trained on (scores are the "
            "network's own)"
        )
    elif len(fit.val_labels) < CALIBRATION_ROWS:
        run.events.message(
            f"calibration: none, {len(fit.val_labels)} validation rows are too few to fit a "
            f"temperature on (it takes {CALIBRATION_ROWS}; scores are the network's own)"
        )
    elif len(temperatures) == 1:
        run.events.message(
            f"calibration: temperature {temperatures[0]:.3f}, fitted on the validation split"
        )
    else:
        run.events.message(
            f"calibration: a temperature per label, fitted on the validation split: "
            f"{temperatures[0]:.2f} to {temperatures[-1]:.2f}"
        )
    if fit.multi_label:
        shown = sorted(decision.thresholds)
        run.events.message(
            f"thresholds ({_threshold_kind(fit.thresholds)}) tuned on the validation split: "
            f"{shown[0]:.2f} to {shown[-1]:.2f}, median {shown[len(shown) // 2]:.2f}"
        )
    return decision


def _threshold_kind(mode: str | float) -> str:
    return {"per_label": "each label's best F1", "global": "one for all labels"}.get(
        str(mode), "fixed"
    )


def _plots(run: _Run, history: list[EpochResult]) -> None:
    """``learning-curves.png`` and ``validation-confusion.png`` (the kept weights) in the run
    folder."""
    from textlstm.run.plots import confusion, learning_curves

    recipe, state = run.recipe, run.state
    learning_curves(
        [asdict(row) for row in history],
        recipe.train.metric,
        run.folder / "learning-curves.png",
        f"{recipe.name}: {len(history)} epoch(s), kept epoch {state.best_epoch}",
    )
    if run.fit.multi_label:  # no confusion matrix: each label is decided on its own
        return
    logits = _best_logits(run)
    result = report(run.fit.val_labels, logits.argmax(1), run.prepared.splits.labels)
    confusion(result, run.folder / "validation-confusion.png", f"{recipe.name}: validation")


def _join_wide(run: _Run) -> dict[str, Any]:
    """model.wide: the weights of the network's logits and of the linear scores, fitted on the
    validation split with the best weights of the network; returns meta.json's ``validation``
    for the joined model and ``wide``."""
    model, state, fit = run.fit.model, run.state, run.fit
    wide = model.wide
    assert state.best_state is not None and isinstance(wide, WideNgrams)
    model.load_state_dict(state.best_state)
    ids, batch = run.prepared.ids["validation"], run.recipe.train.eval_batch_size
    network_alone(wide)
    network = logits_for(model, ids, batch, run.target, run.precision)
    linear = linear_scores(wide, ids, batch, run.target)
    weights = fit_scale(network, linear, fit.val_labels)
    wide.network.fill_(weights[0])
    wide.scale.fill_(weights[1])
    for name in ("network", "scale"):
        state.best_state[f"wide.{name}"] = getattr(wide, name).detach().clone()
    joined = weights[0] * network + weights[1] * linear  # as the model joins them
    loss, scores = validation_scores(fit, joined)
    key = "macro_f1" if fit.multi_label else "accuracy"
    alone = {
        name: validation_scores(fit, part)[1][key]
        for name, part in (("network", network), ("linear", linear))
    }
    what = "macro-F1" if fit.multi_label else "accuracy"
    run.events.message(
        f"model.wide: the network's logits weighed {weights[0]:g}, the linear scores "
        f"{weights[1]:g}: validation {what} {scores[key]:.2%} (the network alone "
        f"{alone['network']:.2%}, the linear model alone {alone['linear']:.2%})"
    )
    best = asdict(EpochResult(**state.history[state.best_epoch - 1]))
    best.update(validation_loss=loss, **scores)
    wide_meta = {"network": weights[0], "scale": weights[1], "validation_accuracy_alone": alone}
    return {"validation": best, "wide": wide_meta}


def _threads_meta(run: _Run) -> dict[str, Any] | None:
    """The thread policy, and the threads of the two lanes the directions ran in, if they did."""
    policy, split = threads.meta(), lanes_of(run.fit.model, run.target)
    return {**policy, "lanes": list(split)} if policy is not None and split else policy


def _meta(run: _Run, stopped: str, history: list[EpochResult]) -> dict[str, Any]:
    recipe, state, splits, done = (
        run.recipe,
        run.state,
        run.prepared.splits,
        run.prepared.preprocessed,
    )
    return {
        "name": recipe.name,
        "seed": recipe.seed,
        "device": str(run.target),
        "processes": run.world.size,
        "threads": _threads_meta(run),
        "data_source": splits.source,
        "data_fingerprint": splits.fingerprint(),
        "data_dir": _mirror_root(recipe, run.data_dir),
        "split_rows": {name: len(splits[name]) for name in splits.names},
        "vocabulary": {
            "origin": done.vocab_origin,
            "key": done.vocab_key,
            "vectors_coverage": asdict(done.coverage) if done.coverage else None,
        },
        "metric": recipe.train.metric,
        "multi_label": splits.multi_label,
        "precision": run.precision,
        "best_epoch": state.best_epoch,
        "stopped": stopped,
        "validation": asdict(history[state.best_epoch - 1]),
        "train_seconds": round(state.seconds, 2),  # finished epochs, over every session
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _portable(recipe: Recipe, splits: Splits) -> Recipe:
    """The recipe as saved in the run folder: local paths made absolute, so they still point at
    the same files when the recipe is read from inside the run folder."""
    if splits.local_path:
        recipe = recipe.model_copy(
            update={"data": recipe.data.model_copy(update={"dataset": splits.local_path})}
        )
    paths = {
        key: str(Path(recipe.resolve_path(value)).resolve())
        for key in ("path", "vectors")
        if (value := getattr(recipe.vocab, key)) is not None and not value.startswith("pkg:")
    }
    if paths:
        recipe = recipe.model_copy(update={"vocab": recipe.vocab.model_copy(update=paths)})
    return absolute_encoder(recipe)


def _mirror_root(recipe: Recipe, data_dir: str | Path | None) -> str | None:
    """The mirror root the data came from, so evaluate can find it again without a data_dir."""
    root = data_root(data_dir)
    if root is None or not (root / recipe.data.dataset).exists():
        return None
    return str(root.resolve())
