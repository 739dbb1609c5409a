"""The study and a trial: Optuna's storage (the journal file in the tune folder, or a database
server), the sampler and pruner, the recipe a trial's parameters give, and the trial itself, an
ordinary training run whose per-epoch validation metric goes to the pruner."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textlstm.errors import TextLSTMError, TrainingDiverged, param
from textlstm.recipe import Recipe, SpaceEntry, recipe_from_dict
from textlstm.text.cache import Options
from textlstm.training import train
from textlstm.training.events import EpochResult, Events
from textlstm.tuning.events import TuneEvents


@dataclass
class Plan:
    """What every worker of one `tune` call needs (picklable: it crosses to spawned workers)."""

    recipe: Recipe
    folder: Path
    storage: str | None
    wanted: int
    deadline: float | None
    prune: bool
    data_dir: str | Path | None
    device: str
    options: Options | None
    keep: int | None


def suggest(trial: Any, key: str, entry: SpaceEntry) -> Any:
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


def sampler(kind: str, seed: int) -> Any:
    import optuna

    seed %= 2**32
    return (
        optuna.samplers.TPESampler(seed=seed)
        if kind == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: show it as given
        return url


def open_storage(folder: Path, url: str | None) -> Any:
    """The study's storage: the journal file in the tune folder, or a database server."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        return JournalStorage(JournalFileBackend(str(folder / "study.log")))
    shown = _hide_password(url)
    try:
        return _rdb(url)
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise TextLSTMError(
            f"{param('storage', shown)}: the database driver is missing ({cause}); "
            "install it, e.g. pip install 'psycopg[binary]' for postgresql:// "
            "or pip install pymysql for mysql+pymysql://"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to open the database is reported
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TextLSTMError(
            f"{param('storage', shown)}: cannot open the study database ({first}); give a "
            "URL such as postgresql://user:password@host:5432/dbname"
        ) from None


def _rdb(url: str) -> Any:
    """Optuna's RDB storage. Workers that start together on a new database race to create its
    tables; the loser sees a duplicate-key error, and on a second try finds them made."""
    import random

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError):
            if attempt == 5:
                raise
            time.sleep(0.2 + random.random())


def open_study(recipe: Recipe, storage: Any, prune: bool) -> Any:
    import optuna

    assert recipe.tune is not None
    cfg = recipe.tune
    pruner: Any = optuna.pruners.NopPruner()
    if prune and cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    elif prune and cfg.pruner == "hyperband":
        # with train.epochs = "auto" optuna takes the longest trial as the maximum resource
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=recipe.train.epochs)
    return optuna.create_study(
        study_name=recipe.name,
        storage=storage,
        sampler=sampler(cfg.sampler, cfg.seed),
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def run_trial(trial: Any, plan: Plan, events: TuneEvents) -> float:
    recipe = plan.recipe
    assert recipe.tune is not None
    params = {key: suggest(trial, key, entry) for key, entry in recipe.tune.space.items()}
    events.trial_start(trial.number, params)
    candidate = with_params(recipe, params)
    candidate = candidate.model_copy(
        update={"train": candidate.train.model_copy(update={"metric": recipe.tune.metric})}
    )
    out = plan.folder / "trials" / f"{trial.number:04d}"
    reporter = Reporter(trial, recipe.tune.metric, events)
    try:
        result = train(candidate, out, plan.data_dir, plan.device, reporter, plan.options)
    except BaseException:  # pruned, failed or killed: nothing in the folder is worth keeping
        shutil.rmtree(out, ignore_errors=True)
        raise
    if result.stopped == "interrupted":  # Ctrl-C inside training: stop the study, not just the run
        shutil.rmtree(out, ignore_errors=True)
        raise KeyboardInterrupt
    trial.set_user_attr("run_dir", str(result.run_dir))
    trial.set_user_attr("best_epoch", result.best_epoch)
    if not math.isfinite(result.best_value):
        raise TextLSTMError("no finite validation score")
    return result.best_value


class Reporter(Events):
    """Forwards each epoch's validation metric to Optuna; raises TrialPruned when told to."""

    def __init__(self, trial: Any, metric: str, events: TuneEvents) -> None:
        self.trial, self.metric, self.events = trial, metric, events

    def epoch_end(self, result: EpochResult) -> None:
        import optuna

        value = result.metric(self.metric)
        self.trial.report(value, result.epoch)
        self.events.trial_epoch(self.trial.number, result.epoch, value)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")


def reason(exc: BaseException) -> str:
    """Why a trial failed, in one line, its parameter references kept (``errors.say`` words it
    for the library, the CLI with its flags)."""
    if isinstance(exc, TextLSTMError):
        return exc.raw_lines[0]
    if isinstance(exc, TrainingDiverged):
        return exc.reason
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
