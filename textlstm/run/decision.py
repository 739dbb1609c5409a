"""How a run's logits become scores and labels, kept in the run folder as ``decision.json``.

Single-label runs score with a softmax and pick the top class. Multi-label runs score each label
with a sigmoid and pick every label whose score reaches its threshold; the thresholds are tuned
on the validation split after training (each label's own by default, one for all as an option)
and kept here, so prediction, evaluation, export and serving all decide alike.

Scores are calibrated by temperature scaling (Guo et al. 2017): the logits are divided by a
temperature fitted on the validation split for the lowest negative log-likelihood, one for a
softmax, one per label for sigmoids. Dividing by a positive number keeps each row's order of
classes, so a single-label run's labels do not change; multi-label thresholds are tuned on the
calibrated scores. NumPy only: an ONNX export decides without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.errors import CheckpointError

FILE = "decision.json"
GLOBAL_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # one threshold for every label


@dataclass(frozen=True)
class Decision:
    multi_label: bool = False
    thresholds: tuple[float, ...] = field(default_factory=tuple)  # multi-label: one per label
    # what the logits are divided by: one number, or for multi-label one per label
    temperature: tuple[float, ...] = (1.0,)
    # single-label: each held-out validation row's 1 - (calibrated) score of its true label,
    # sorted; split conformal prediction sets are read from them (``sets``)
    conformal: tuple[float, ...] = ()

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(rows, labels) calibrated scores: sigmoids for multi-label, a softmax otherwise."""
        z = np.asarray(logits, dtype=np.float64) / np.asarray(self.temperature)
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def chosen(self, probabilities: np.ndarray) -> np.ndarray:
        """(rows, labels) booleans: the labels each row is given."""
        if self.multi_label:
            return probabilities >= np.asarray(self.thresholds, dtype=np.float32)
        picked = np.zeros(probabilities.shape, dtype=bool)
        picked[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
        return picked

    def sets(self, probabilities: np.ndarray, coverage: float) -> np.ndarray:
        """(rows, labels) booleans: split conformal prediction sets (Vovk et al. 2005; the
        least-ambiguous sets of Sadinle et al. 2019). With n validation scores, the threshold is
        the ceil((n + 1) * coverage)-th smallest, and a set holds every label whose score is at
        least 1 minus it: for texts exchangeable with the validation ones, a set contains the
        true label with probability at least ``coverage``. A set may be empty: where the model
        is right more often than ``coverage`` asks, its least sure texts get no label, so that
        the sets are as small as the coverage allows (giving them their top label would raise
        the coverage to the accuracy)."""
        n = len(self.conformal)
        rank = int(np.ceil((n + 1) * coverage))
        cut = 1.0 if rank > n else self.conformal[rank - 1]
        return probabilities >= 1.0 - cut - 1e-12

    def to_dict(self, labels: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"multi_label": self.multi_label}
        if self.multi_label:
            out["thresholds"] = {name: round(t, 6) for name, t in zip(labels, self.thresholds)}
        if len(self.temperature) > 1:
            out["temperature"] = {name: round(t, 6) for name, t in zip(labels, self.temperature)}
        else:
            out["temperature"] = round(self.temperature[0], 6)
        if self.conformal:
            out["conformal_scores"] = [round(s, 6) for s in self.conformal]
        return out

    def save(self, folder: Path, labels: list[str]) -> None:
        text = json.dumps(self.to_dict(labels), indent=2, ensure_ascii=False)
        (folder / FILE).write_text(text, encoding="utf-8")


SINGLE = Decision()


def read(folder: Path, labels: list[str], raw: Any) -> Decision:
    """``decision.json``'s parsed JSON checked against the run's labels; one line naming the
    file and the fix when it does not fit."""
    path = folder / FILE
    if not isinstance(raw, dict) or not isinstance(raw.get("multi_label"), bool):
        raise CheckpointError(f'{path}: expected a JSON object with "multi_label": true or false')
    temperature = _temperature(path, labels, raw.get("temperature", 1.0))
    if not raw["multi_label"]:
        scores = raw.get("conformal_scores", [])
        if not isinstance(scores, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1 for s in scores
        ):
            raise CheckpointError(
                f"{path}: conformal_scores must be a list of numbers between 0 and 1; "
                "train again or remove the key"
            )
        return Decision(False, (), temperature, tuple(sorted(float(s) for s in scores)))
    given = raw.get("thresholds")
    if not isinstance(given, dict) or sorted(given) != sorted(labels):
        raise CheckpointError(
            f"{path}: thresholds must give one number for each label in labels.json "
            f"({', '.join(labels[:3])}, ...)"
        )
    for name in labels:
        value = given[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise CheckpointError(
                f"{path}: the threshold of {name!r} is {value!r}; give a number between 0 and "
                "1 (exclusive)"
            )
    return Decision(True, tuple(float(given[name]) for name in labels), temperature)


def _temperature(path: Path, labels: list[str], given: Any) -> tuple[float, ...]:
    values = [given.get(name) for name in labels] if isinstance(given, dict) else [given]
    if isinstance(given, dict) and sorted(given) != sorted(labels):
        values = [None]
    checked: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise CheckpointError(
                f"{path}: temperature must be a positive number, or one for each label; "
                "train again or remove the key (1: the network's own scores)"
            )
        checked.append(float(value))
    return tuple(checked)


def best_f1_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """The threshold on one label's scores with the best F1 on these rows: midway between the
    lowest score kept and the highest one left out (0.5 when no row has the label)."""
    positives = int(truth.sum())
    if positives == 0:
        return 0.5
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(truth[order])
    kept = np.arange(1, len(scores) + 1)
    f1 = 2 * hits / (kept + positives)
    # equal scores must fall on the same side: only the last of a run of ties can end the cut
    last = np.r_[ranked[1:] != ranked[:-1], True]
    k = int(np.argmax(np.where(last, f1, -1.0)))
    below = ranked[k + 1] if k + 1 < len(ranked) else 0.0
    return float(np.clip((ranked[k] + below) / 2, 1e-4, 1 - 1e-4))


def tune_thresholds(
    probabilities: np.ndarray,
    truth: np.ndarray,
    mode: str | float,
    metric: str = "micro_f1",
    shrink: float = 0.0,
) -> tuple[float, ...]:
    """Thresholds for each label: ``per_label`` (each label's best F1, moved ``shrink`` of the
    way to the one threshold with the best micro-F1), ``global`` (the one value on GLOBAL_GRID
    with the best ``metric``), or a fixed number."""
    labels = probabilities.shape[1]
    if not isinstance(mode, str):
        return (float(mode),) * labels
    if mode == "global":
        return (_global(probabilities, truth, metric),) * labels
    own = np.array(
        [best_f1_threshold(probabilities[:, j], truth[:, j].astype(bool)) for j in range(labels)]
    )
    if shrink > 0:
        own = (1 - shrink) * own + shrink * _global(probabilities, truth, "micro_f1")
    return tuple(float(t) for t in own)


def _global(probabilities: np.ndarray, truth: np.ndarray, metric: str) -> float:
    from textlstm.run.metrics import multi_scores

    truth = truth.astype(bool)
    return float(max(GLOBAL_GRID, key=lambda t: multi_scores(truth, probabilities >= t)[metric]))


# the coarse search: a validation split the network gets all right would otherwise drive the
# temperature toward 0 (scores of exactly 0 and 1), which no fresh text would bear out
TEMPERATURES = np.exp(np.linspace(np.log(0.2), np.log(10.0), 97))
CALIBRATION_ROWS = 100  # fewer validation rows than this fit no temperature


def fit_temperature(logits: np.ndarray, truth: np.ndarray, multi_label: bool) -> tuple[float, ...]:
    """The temperature with the lowest negative log-likelihood of ``truth`` on these rows:
    (one,) for a softmax over class ids ``truth`` (rows,), one per label for sigmoids over 0/1
    ``truth`` (rows, labels). A coarse log grid, then a golden-section search around its best."""
    z = np.asarray(logits, dtype=np.float64)
    if not multi_label:
        return (_search(lambda t: _softmax_nll(z / t, truth)),)
    return tuple(
        _search(lambda t, j=j: _sigmoid_nll(z[:, j] / t, truth[:, j])) for j in range(z.shape[1])
    )


def _search(loss: Any) -> float:
    values = [loss(t) for t in TEMPERATURES]
    i = int(np.argmin(values))
    low, high = TEMPERATURES[max(i - 1, 0)], TEMPERATURES[min(i + 1, len(TEMPERATURES) - 1)]
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return float((low + high) / 2)


def _softmax_nll(z: np.ndarray, truth: np.ndarray) -> float:
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(z)), truth]).mean())


def _sigmoid_nll(z: np.ndarray, truth: np.ndarray) -> float:
    # -log sigmoid(z) for positives, -log(1 - sigmoid(z)) for negatives, without overflow
    return float((np.logaddexp(0.0, -z) * truth + np.logaddexp(0.0, z) * (1 - truth)).mean())


def conformal_scores(probabilities: np.ndarray, truth: np.ndarray) -> tuple[float, ...]:
    """Each row's 1 - score of its true label (rows,), sorted: what ``Decision.sets`` reads."""
    return tuple(sorted((1.0 - probabilities[np.arange(len(truth)), truth]).tolist()))


def calibrated(
    logits: np.ndarray,
    truth: np.ndarray,
    multi_label: bool,
    thresholds: str | float = "per_label",
    metric: str = "micro_f1",
    held_out: bool = True,
    shrink: float = 0.0,
) -> Decision:
    """The decision fitted on validation logits (rows, labels) and their truth: temperature,
    then (multi-label) thresholds on the calibrated scores, or (single-label) the conformal
    scores. ``held_out`` False: the rows were trained on, so scores are left as the network
    gives them and no conformal scores are kept (they would promise coverage they lack); fewer
    than CALIBRATION_ROWS rows fit no temperature either."""
    enough = held_out and len(truth) >= CALIBRATION_ROWS
    temperature = fit_temperature(logits, truth, multi_label) if enough else (1.0,)
    if multi_label:
        plain = Decision(True, (), temperature)
        chosen = tune_thresholds(plain.probabilities(logits), truth, thresholds, metric, shrink)
        return Decision(True, chosen, temperature)
    plain = Decision(False, (), temperature)
    kept = conformal_scores(plain.probabilities(logits), truth) if held_out else ()
    return Decision(False, (), temperature, kept)


def multi_hot(rows: list[list[int]], labels: int) -> np.ndarray:
    """(rows, labels) float32 targets from each row's label ids."""
    out = np.zeros((len(rows), labels), dtype=np.float32)
    for i, ids in enumerate(rows):
        out[i, ids] = 1.0
    return out
