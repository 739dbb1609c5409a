"""K-fold cross-validation: one run per fold, each tested on its held-out fold, and the mean and
standard deviation of every score, as papers report small data sets without a test split (CR,
SUBJ, MPQA, MR: 10-fold means).

The folds are a data setting (``data.folds``, ``data.fold``: see ``data.splits``), so each fold's
run folder is an ordinary run whose recipe says which rows it held out; ``evaluate`` and
``report`` work on it as on any run. The runs sit under one parent folder, with ``folds.json``.
It lives beside the tuning study: both train a recipe several times and weigh the runs, above
training and evaluation, which never import each other.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textlstm import settings
from textlstm.errors import CheckpointError, DataError, param
from textlstm.files import read_bytes, write_text
from textlstm.recipe import Recipe
from textlstm.run import checkpoint

FOLDS_FILE = "folds.json"
SCORES = ("accuracy", "macro_f1")


@dataclass
class FoldsResult:
    folder: Path  # the parent: a run folder per fold, and folds.json
    runs: list[Path]
    scores: dict[str, list[float]]  # score -> its value on each fold's test split
    baseline: dict[str, list[float]] = field(default_factory=dict)  # the same for TF-IDF + LR

    def mean(self, score: str, baseline: bool = False) -> float:
        return statistics.fmean((self.baseline if baseline else self.scores)[score])

    def std(self, score: str, baseline: bool = False) -> float:
        """The sample standard deviation over the folds."""
        values = (self.baseline if baseline else self.scores)[score]
        return statistics.stdev(values) if len(values) > 1 else 0.0


def train_folds(
    recipe: Recipe,
    folds: int,
    out_dir: str | Path = settings.RUNS_DIR,
    data_dir: str | Path | None = None,
    device: str = "auto",
    events: Any = None,
    options: Any = None,
    on_fold: Callable[[int, Path], None] | None = None,
) -> FoldsResult:
    """Train ``recipe`` on each of ``folds`` stratified folds of its train split, each run tested
    on its held-out fold, under ``out_dir/<name>-folds/<stamp>`` (and ``<name>-folds/latest``)."""
    from textlstm.recipe import recipe_from_dict
    from textlstm.training.trainer import train

    if folds < 2:
        raise DataError(f"{param('folds')}: give 2 or more folds")
    where = recipe.source or "<recipe>"
    if recipe.data.test_fraction > 0:
        raise DataError(
            f"{where}: data.test_fraction: {param('folds')} gives the test split; remove "
            "data.test_fraction (or --set data.test_fraction=0)"
        )
    recipes = []  # every fold's recipe valid before any folder is made
    for fold in range(1, folds + 1):
        raw = recipe.model_dump(mode="json", exclude_none=True)
        raw["data"].update(folds=folds, fold=fold)
        raw["name"] = f"{recipe.name}-fold{fold}"
        recipes.append(recipe_from_dict(raw, str(where)))
    parent = checkpoint.reserve_run_dir(out_dir, f"{recipe.name}-folds")
    runs = []
    for fold, one in enumerate(recipes, start=1):
        result = train(one, parent, data_dir, device, events, options)
        runs.append(result.run_dir)
        if on_fold is not None:
            on_fold(fold, result.run_dir)
    done = evaluate_folds(parent, runs, data_dir, device)
    folder = checkpoint.finalize(parent).resolve()
    return FoldsResult(folder, [folder / run.relative_to(parent) for run in runs], done.scores)


def evaluate_folds(
    folder: Path,
    runs: list[Path] | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    baseline: bool = False,
) -> FoldsResult:
    """Each fold's run on its held-out fold (and TF-IDF + LR fitted on the same training rows,
    with ``baseline``); the scores are written to ``folds.json``."""
    from textlstm.evaluation.evaluate import evaluate

    runs = runs if runs is not None else fold_runs(folder)
    scores: dict[str, list[float]] = {name: [] for name in SCORES}
    linear: dict[str, list[float]] = {name: [] for name in SCORES} if baseline else {}
    for run in runs:
        done = evaluate(run, split="test", data_dir=data_dir, device=device, baseline=baseline)
        for name in SCORES:
            scores[name].append(float(getattr(done.report, name)))
            if done.baseline is not None:
                linear[name].append(float(getattr(done.baseline.report, name)))
    result = FoldsResult(folder, runs, scores, linear)
    record = {
        "folds": len(runs),
        "runs": [str(run.relative_to(folder)) for run in runs],
        "scores": scores,
        "mean": {name: result.mean(name) for name in SCORES},
        "std": {name: result.std(name) for name in SCORES},
    }
    if baseline:
        record["baseline"] = {
            "scores": linear,
            "mean": {name: result.mean(name, True) for name in SCORES},
            "std": {name: result.std(name, True) for name in SCORES},
        }
    write_text(folder / FOLDS_FILE, json.dumps(record, indent=2) + "\n")
    return result


def is_folds_folder(folder: str | Path) -> bool:
    return (Path(folder) / FOLDS_FILE).is_file()


def fold_runs(folder: Path) -> list[Path]:
    """The fold runs that ``folds.json`` lists, each a complete run folder."""
    path = folder / FOLDS_FILE
    try:
        record = json.loads(read_bytes(path, "folds file", CheckpointError, 1 << 20))
        runs = [folder / name for name in record["runs"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a valid folds file ({exc})") from None
    for run in runs:
        if not (run / "meta.json").is_file():
            raise CheckpointError(f"{run}: a fold's run folder is missing or incomplete")
    return runs
