"""What a study leaves: trial summaries, the best N trial folders, ``best.toml``,
``leaderboard.json``, the plots, and the best configuration retrained."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from textlstm.errors import TextLSTMError, say
from textlstm.files import atomic_path, write_text
from textlstm.recipe import Recipe
from textlstm.text.cache import Options
from textlstm.training import train
from textlstm.training.events import Events, TrainResult
from textlstm.tuning.events import TrialSummary, TuneEvents, TuneResult
from textlstm.tuning.study import reason, with_params


def summary(trial: Any) -> TrialSummary:
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    run_dir = trial.user_attrs.get("run_dir")
    return TrialSummary(
        trial.number,
        dict(trial.params),
        trial.value,
        trial.state.name,
        seconds,
        run_dir if run_dir and Path(run_dir).is_dir() else None,
        say(trial.user_attrs["reason"]) if trial.user_attrs.get("reason") else None,
        trial.user_attrs.get("best_epoch"),
        bool(trial.user_attrs.get("orphaned")),
    )


def keep_best(study: Any, keep: int | None) -> None:
    """Remove the run folders of every complete trial but the best ``keep``."""
    if not keep:
        return
    complete = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and t.value is not None
    ]
    complete.sort(key=lambda t: (-t.value, t.number))
    for trial in complete[keep:]:
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir and Path(run_dir).is_dir():
            shutil.rmtree(Path(run_dir).parent.parent, ignore_errors=True)  # trials/<number>/


def write_results(recipe: Recipe, study: Any, folder: Path, ran: int) -> TuneResult:
    assert recipe.tune is not None
    summaries = [summary(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in summaries if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        failed = [t for t in summaries if t.reason and t.state == "FAIL"]
        last = failed[-1].reason if failed else ""
        why = f": trial {failed[-1].number} failed: {getattr(last, 'raw', last)}" if failed else ""
        raise TextLSTMError(f"{folder}: no trial finished{why}")
    best = max(complete, key=lambda t: (t.value, -t.number))
    best_recipe = with_params(recipe, best.params)
    path = folder / "best.toml"
    write_text(
        path,
        f"# best of {len(complete)} finished trial(s) of {folder}: validation "
        f"{recipe.tune.metric} {best.value:.4f} (trial {best.number}, best epoch "
        f"{best.best_epoch})\n" + best_recipe.to_toml(),
    )
    write_text(
        folder / "leaderboard.json",
        json.dumps(
            [t.__dict__ for t in sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))],
            indent=1,
            default=str,
        ),
    )
    return TuneResult(
        folder,
        recipe.tune.metric,
        best.params,
        float(best.value or 0.0),
        path,
        best.number,
        summaries,
        ran,
    )


def plots(study: Any, folder: Path, metric: str, events: TuneEvents) -> list[Path]:
    """history.png (the metric of every trial, and the best so far) and importances.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplot

    written = []
    for name, draw in (
        ("history.png", oplot.plot_optimization_history),
        ("importances.png", oplot.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study, target_name=f"validation {metric}")
                figure: Any = axes.figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                with atomic_path(folder / name) as tmp:
                    figure.savefig(tmp, dpi=110)
                plt.close(figure)
            written.append(folder / name)
        except Exception as exc:  # noqa: BLE001 - e.g. importances need two finished trials that differ
            events.message(say(f"no {name}: {reason(exc)}"))
    return written


def retrain_best(
    recipe: Recipe,
    result: TuneResult,
    data_dir: str | Path | None,
    device: str,
    events: Events,
    options: Options | None,
) -> TrainResult:
    """Train the best configuration once more, as ``tune.retrain`` says: on the train split (as
    the trial did), or on train+validation for the best trial's number of epochs, keeping the
    last epoch (validation rows are training rows then, so they cannot pick an epoch)."""
    from textlstm.recipe import load_recipe

    assert recipe.tune is not None
    best = load_recipe(result.best_recipe)
    if recipe.tune.retrain == "train+validation":
        trial = next(t for t in result.trials if t.number == result.best_trial)
        epochs = trial.best_epoch or best.train.epochs
        data = best.data.model_copy(update={"train_on_validation": True})
        train_cfg = best.train.model_copy(update={"epochs": epochs, "patience": 0, "keep": "last"})
        best = best.model_copy(update={"data": data, "train": train_cfg})
        events.message(
            f"retraining the best configuration on the training and validation rows for "
            f"{epochs} epoch(s), the best trial's best epoch"
        )
    else:
        events.message("retraining the best configuration on the train split")
    return train(best, result.folder / "retrain", data_dir, device, events, options)
