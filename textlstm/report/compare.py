"""``textlstm compare``: the recipe keys in which runs differ, and their scores, side by side."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textlstm.errors import CheckpointError
from textlstm.files import check_file

ABSENT = "-"


@dataclass
class Comparison:
    runs: list[Path]
    differing: dict[str, list[str]]  # dotted recipe key -> its value in each run (shown)
    scores: dict[str, list[str]]  # metric -> its value in each run (shown)


def compare(run_dirs: list[str | Path]) -> Comparison:
    """Every recipe key whose value is not the same in all runs, and each run's validation
    score, training time and the evaluations found in its folder (``eval-*.json``)."""
    if len(run_dirs) < 2:
        raise CheckpointError("compare: give two or more run folders")
    runs = [Path(r) for r in run_dirs]
    recipes, metas = [], []
    for run in runs:
        if not run.is_dir():
            raise CheckpointError(f"{run}: run folder not found")
        recipes.append(_flat(_toml(run / "recipe.toml")))
        metas.append(_json(run / "meta.json"))
    keys = sorted(set().union(*recipes))
    differing = {
        key: [_show(r.get(key, ABSENT)) for r in recipes]
        for key in keys
        if len({json.dumps(r.get(key, ABSENT), sort_keys=True) for r in recipes}) > 1
    }
    scores: dict[str, list[str]] = {}
    metric = metas[0].get("metric", "accuracy")
    rows = {
        f"validation {metric}": [_percent((m.get("validation") or {}).get(metric)) for m in metas],
        "best epoch": [str(m.get("best_epoch", ABSENT)) for m in metas],
        "training seconds": [_number(m.get("train_seconds")) for m in metas],
    }
    scores.update(rows)
    evaluated = [_evaluations(run) for run in runs]
    for name in sorted(set().union(*evaluated)):
        scores[f"{name} accuracy"] = [_percent(e.get(name)) for e in evaluated]
    return Comparison(runs, differing, scores)


def _toml(path: Path) -> dict[str, Any]:
    check_file(path, "recipe file", CheckpointError)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable recipe ({exc})") from None


def _json(path: Path) -> dict[str, Any]:
    check_file(path, "meta.json file", CheckpointError)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a run's meta.json")
    return value


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _evaluations(run: Path) -> dict[str, float]:
    found = {}
    for path in sorted(run.glob("eval-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found[str(data["evaluated_on"])] = float(data["accuracy"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            continue  # a report from another version, or a broken one: not compared
    return found


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _percent(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else ABSENT


def _number(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else ABSENT
