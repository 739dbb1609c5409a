"""``tune``: run a recipe's study until it has its trials, then write its results.

The study lives in ``<out>/<name>-tune/``. Running ``tune`` again on the same recipe continues the
same study and runs only the trials still missing; ``jobs`` worker processes share it, and so do
workers on other machines given the same database ``storage``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textlstm import settings
from textlstm.errors import RecipeError, TextLSTMError, param
from textlstm.recipe import Recipe, TuneConfig
from textlstm.text.cache import Options
from textlstm.tuning.events import TuneEvents, TuneResult
from textlstm.tuning.results import keep_best, plots, retrain_best, write_results
from textlstm.tuning.study import Plan, open_storage, open_study
from textlstm.tuning.workers import claim, fail_stale, finished, pool, work


def tune(
    recipe: Recipe,
    out_dir: str | Path = settings.RUNS_DIR,
    trials: int | None = None,
    timeout: float | None = None,
    prune: bool = True,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: TuneEvents | None = None,
    options: Options | None = None,
    jobs: int = 1,
    storage: str | None = None,
    keep: int | None = None,
    retrain: bool = False,
) -> TuneResult:
    """Run the study until it has ``trials`` finished trials (or ``timeout`` seconds pass).

    ``jobs`` worker processes run trials side by side (each gets an equal share of the cores);
    ``storage`` is a database URL for a study shared by workers on several machines; ``keep``
    keeps only the best N trial run folders; ``retrain`` then trains the best configuration as
    ``tune.retrain`` says (on train+validation by default) into ``<tune folder>/retrain/``."""
    import optuna

    cfg, events = _tune_section(recipe, jobs), events or TuneEvents()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(out_dir) / f"{recipe.name}-tune"
    study_storage = open_storage(folder, storage) if storage else None  # fails before mkdir
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(recipe, study_storage or open_storage(folder, None), prune)
    with claim(folder):
        fail_stale(study)
    existing = finished(study)
    seconds = timeout or cfg.timeout
    deadline = time.time() + seconds if seconds else None
    where = str(data_dir) if data_dir is not None else None
    plan = Plan(
        recipe,
        folder,
        storage,
        trials or cfg.trials,
        deadline,
        prune,
        where,
        device,
        options,
        keep or cfg.keep,
    )
    interrupted = _run(study, plan, jobs, existing, events)
    keep_best(study, plan.keep)
    result = write_results(recipe, study, folder, finished(study) - existing)
    result.interrupted = interrupted
    result.plots = plots(study, folder, cfg.metric, events)
    events.study_end(result)
    if retrain and not interrupted:
        result.retrained = retrain_best(recipe, result, data_dir, device, events, options)
    return result


def _tune_section(recipe: Recipe, jobs: int) -> TuneConfig:
    if recipe.tune is None or not recipe.tune.space:
        raise RecipeError(
            f"{recipe.source or '<recipe>'}: tune: no [tune.space] to search; add "
            'e.g. [tune.space] "train.lr" = { log_uniform = [3e-4, 3e-3] }'
        )
    if jobs < 1:
        raise TextLSTMError(f"{param('jobs', jobs)}: give at least 1 worker")
    return recipe.tune


def _run(study: Any, plan: Plan, jobs: int, existing: int, events: TuneEvents) -> bool:
    """The missing trials, in this process or in worker processes; whether Ctrl-C stopped them."""
    assert plan.recipe.tune is not None
    remaining = max(0, plan.wanted - existing)
    if not remaining:
        return False
    workers, seed = min(jobs, remaining), plan.recipe.tune.seed + existing
    events.message(
        f"study {plan.folder}: {existing} trial(s) done, running {remaining} more"
        + (f" in {workers} worker processes" if workers > 1 else "")
    )
    interrupted = False
    try:
        if workers == 1:
            work(study, plan, seed, events)
        else:
            interrupted = pool(study, plan, workers, seed, events)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        events.message(
            "interrupted: the study keeps every finished trial; run the same "
            "command again to continue it"
        )
    return interrupted
