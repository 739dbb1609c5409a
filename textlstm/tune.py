"""Hyperparameter search over a recipe's ``[tune.space]``, on Optuna.

The study lives in ``<out>/<name>-tune/`` in Optuna's journal file storage (``study.log``), which
several processes can share. Running ``tune`` again on the same recipe continues the same study and
runs only the trials still missing. Each trial is an ordinary training run (in
``trials/<number>/``); its per-epoch validation metric is reported to Optuna so that a pruner can
stop hopeless trials early. At the end, ``best.toml`` holds the full recipe with the best values.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textlstm.errors import RecipeError, TextLSTMError
from textlstm.preprocess import Options
from textlstm.recipe import Recipe, SpaceEntry, recipe_from_dict
from textlstm.training import EpochResult, Events, train

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class TrialSummary:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING
    seconds: float | None
    run_dir: str | None = None
    reason: str | None = None  # why a trial failed


@dataclass
class TuneResult:
    folder: Path
    metric: str
    best_params: dict[str, Any]
    best_value: float
    best_recipe: Path
    trials: list[TrialSummary] = field(default_factory=list)
    ran: int = 0  # trials run by this call (the rest came from earlier calls)
    interrupted: bool = False  # stopped by Ctrl-C; what finished is kept and reported


class TuneEvents(Events):
    """Hooks for a tuning run; the CLI draws a live table from them."""

    def trial_start(self, number: int, params: dict[str, Any]) -> None: ...

    def trial_end(self, trial: TrialSummary) -> None: ...


def _suggest(trial: Any, key: str, entry: SpaceEntry) -> Any:
    low_high = entry.values
    if entry.kind == "choice":
        return trial.suggest_categorical(key, entry.values)
    if entry.kind == "int_uniform":
        return trial.suggest_int(key, low_high[0], low_high[1])
    return trial.suggest_float(key, low_high[0], low_high[1], log=entry.kind == "log_uniform")


def with_params(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """The recipe with each dotted key set; validated like any recipe."""
    raw = recipe.model_dump(mode="json", exclude_none=True)
    for key, value in params.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return recipe_from_dict(raw, recipe.source or "<recipe>")


def _sampler(kind: str, seed: int) -> Any:
    import optuna

    return (optuna.samplers.TPESampler(seed=seed) if kind == "tpe"
            else optuna.samplers.RandomSampler(seed=seed))


def _study(recipe: Recipe, folder: Path, prune: bool) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    assert recipe.tune is not None
    cfg = recipe.tune
    pruner: Any = optuna.pruners.NopPruner()
    if prune and cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    elif prune and cfg.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=recipe.train.epochs)
    storage = JournalStorage(JournalFileBackend(str(folder / "study.log")))
    return optuna.create_study(study_name=recipe.name, storage=storage,
                               sampler=_sampler(cfg.sampler, cfg.seed), pruner=pruner, direction="maximize", load_if_exists=True)


def tune(recipe: Recipe, out_dir: str | Path = "runs", trials: int | None = None,
         timeout: float | None = None, prune: bool = True, data_dir: str | Path | None = None,
         device: str = "auto", events: TuneEvents | None = None,
         options: Options | None = None) -> TuneResult:
    """Run the study until it has ``trials`` finished trials (or ``timeout`` seconds pass)."""
    import optuna

    if recipe.tune is None or not recipe.tune.space:
        raise RecipeError(f"{recipe.source or '<recipe>'}: tune: no [tune.space] to search; add "
                          'e.g. [tune.space] "train.lr" = { log_uniform = [3e-4, 3e-3] }')
    cfg, events = recipe.tune, events or TuneEvents()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(out_dir) / f"{recipe.name}-tune"
    folder.mkdir(parents=True, exist_ok=True)
    study = _study(recipe, folder, prune)
    _fail_orphans(study)
    existing = _finished(study)
    # a resumed study draws from a fresh seed, or it would repeat the first trials' values
    study.sampler = _sampler(cfg.sampler, cfg.seed + existing)
    wanted = trials or cfg.trials
    remaining = max(0, wanted - existing)
    deadline = timeout or cfg.timeout
    interrupted = False
    if remaining:
        events.message(f"study {folder}: {existing} trial(s) done, running {remaining} more")
        try:
            study.optimize(lambda t: _objective(t, recipe, folder, data_dir, device, events,
                                                options),
                           n_trials=remaining, timeout=deadline, catch=(TextLSTMError,),
                           callbacks=[lambda s, t: events.trial_end(_summary(t))])
        except KeyboardInterrupt:  # Optuna has marked the running trial failed
            interrupted = True
            events.message("interrupted: the study keeps every finished trial; run the same "
                           "command again to continue it")
    ran = _finished(study) - existing
    result = _results(recipe, study, folder, ran)
    result.interrupted = interrupted
    return result


def _finished(study: Any) -> int:
    """Trials that count against the budget: not those cut short by a kill or Ctrl-C."""
    return sum(t.state.name in FINISHED and not t.user_attrs.get("orphaned") for t in study.trials)


def _fail_orphans(study: Any) -> None:
    """A trial left RUNNING by a killed process will never finish: mark it failed (and orphaned,
    so it does not count against the budget) and the study runs a new trial in its place.
    Only call this when no other worker is running on the study."""
    import optuna

    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, "reason",
                                               "its process died; the trial is run again")
            study._storage.set_trial_user_attr(trial._trial_id, "orphaned", True)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _objective(trial: Any, recipe: Recipe, folder: Path, data_dir: str | Path | None, device: str,
               events: TuneEvents, options: Options | None) -> float:
    try:
        return _run_trial(trial, recipe, folder, data_dir, device, events, options)
    except KeyboardInterrupt:  # not the trial's fault: it is run again when the study continues
        trial.set_user_attr("orphaned", True)
        trial.set_user_attr("reason", "interrupted; the trial is run again")
        raise


def _run_trial(trial: Any, recipe: Recipe, folder: Path, data_dir: str | Path | None,
               device: str, events: TuneEvents, options: Options | None) -> float:
    import optuna

    assert recipe.tune is not None
    params = {key: _suggest(trial, key, entry) for key, entry in recipe.tune.space.items()}
    events.trial_start(trial.number, params)
    candidate = with_params(recipe, params)
    candidate = candidate.model_copy(update={"train": candidate.train.model_copy(
        update={"metric": recipe.tune.metric})})
    out = folder / "trials" / f"{trial.number:04d}"
    reporter = _Reporter(trial, recipe.tune.metric, events)
    try:
        result = train(candidate, out, data_dir, device, reporter, options)
    except optuna.TrialPruned:
        shutil.rmtree(out, ignore_errors=True)
        raise
    except TextLSTMError as exc:
        trial.set_user_attr("reason", exc.lines[0])
        shutil.rmtree(out, ignore_errors=True)
        raise
    if result.stopped == "interrupted":  # Ctrl-C inside training: stop the study, not just the run
        shutil.rmtree(out, ignore_errors=True)
        raise KeyboardInterrupt
    trial.set_user_attr("run_dir", str(result.run_dir))
    if not math.isfinite(result.best_value):
        raise TextLSTMError("no finite validation score")
    return result.best_value


class _Reporter(Events):
    """Forwards each epoch's validation metric to Optuna; raises TrialPruned when told to."""

    def __init__(self, trial: Any, metric: str, events: TuneEvents) -> None:
        self.trial, self.metric, self.events = trial, metric, events

    def epoch_end(self, result: EpochResult) -> None:
        import optuna

        self.trial.report(getattr(result, self.metric), result.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")


def _summary(trial: Any) -> TrialSummary:
    seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
               if trial.datetime_complete and trial.datetime_start else None)
    return TrialSummary(trial.number, dict(trial.params), trial.value, trial.state.name, seconds,
                        trial.user_attrs.get("run_dir"), trial.user_attrs.get("reason"))


def _results(recipe: Recipe, study: Any, folder: Path, ran: int) -> TuneResult:
    assert recipe.tune is not None
    summaries = [_summary(t) for t in study.trials]
    complete = [t for t in summaries if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        raise TextLSTMError(f"{folder}: no trial finished; see the failed trials' reasons")
    best = max(complete, key=lambda t: (t.value, -t.number))
    best_recipe = with_params(recipe, best.params)
    path = folder / "best.toml"
    tmp = folder / f".best.toml.{time.time_ns()}.tmp"
    tmp.write_text(f"# best of {len(complete)} finished trial(s) of {folder}: validation "
                   f"{recipe.tune.metric} {best.value:.4f} (trial {best.number})\n"
                   + best_recipe.to_toml(), encoding="utf-8")
    tmp.replace(path)
    return TuneResult(folder, recipe.tune.metric, best.params, float(best.value), path,
                      summaries, ran)
