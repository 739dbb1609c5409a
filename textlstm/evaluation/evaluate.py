"""Evaluation of a finished run on one of its splits or on other labelled data.

Writes ``eval-<name>.json`` (the full report) and ``eval-<name>-confusion.png`` into the run
folder and returns the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textlstm.data import column, data_root, label_names, load_raw, load_splits, normalize
from textlstm.errors import DataError, param
from textlstm.files import write_text
from textlstm.model.classifier import logits_for
from textlstm.model.wide import WideNgrams, linear_scores, network_alone
from textlstm.predict.predictor import check_coverage, load_for_inference
from textlstm.recipe import DataConfig
from textlstm.run.decision import Decision, multi_hot
from textlstm.run.metrics import Report, multi_report, report
from textlstm.run.plots import calibration

if TYPE_CHECKING:
    from textlstm.run.checkpoint import Loaded


@dataclass
class Evaluation:
    report: Report
    name: str  # the split, or the data file's stem
    json_path: Path
    plot_path: Path
    notes: list[str]
    precision: str = "fp32"  # fp32, bf16 or int8: what the model ran in
    baseline: BaselineScore | None = None  # TF-IDF + LR on the same rows, when asked for
    # model.wide: the accuracy of the network alone and of the linear model alone, same rows
    parts_accuracy: dict[str, float] | None = None
    # per row, for reports: the texts, their labels' indices and the model's probabilities
    texts: list[str] | None = None
    truth: np.ndarray | None = None
    probabilities: np.ndarray | None = None  # calibrated, as prediction gives them
    raw_probabilities: np.ndarray | None = None  # the network's own, before calibration
    # single-label runs: the prediction sets at a coverage, scored on these rows
    sets: SetScore | None = None
    # the expected calibration error before and after the temperature, and the temperature
    calibration: dict[str, Any] | None = None
    thresholds: tuple[float, ...] = ()  # multi-label: each label's, on the calibrated scores


@dataclass
class SetScore:
    """Split conformal prediction sets on the evaluated rows: the share whose set holds the true
    label, against the coverage asked for, and the sets' mean size. ``expected``: where that
    share lands in 95 % of draws when the evaluated rows and the validation rows the scores
    came from are exchangeable (``coverage_range``); a share outside it says the rows are not
    drawn like the validation ones. None on the validation rows themselves."""

    coverage: float
    empirical: float
    mean_size: float
    expected: tuple[float, float] | None = None

    def expected_text(self) -> str:
        """`` (86.9% to 93.1% in 95 % of draws of rows like the validation ones)``, or "";
        a share outside that range says so: the guarantee speaks of rows drawn like those."""
        if self.expected is None:
            return ""
        low, high = self.expected
        said = f"{low:.1%} to {high:.1%} in 95 % of draws of rows like the validation ones"
        if not low <= self.empirical <= high:
            said += "; outside it, so these rows are not drawn like the validation ones"
        return f" ({said})"


def coverage_law(n: int, m: int, coverage: float) -> Any:
    """How many of m rows, exchangeable with the n validation rows whose scores the sets were
    calibrated on, the sets cover: given the n scores they cover a new row with probability
    Beta(k, n + 1 - k), k = ceil((n + 1) * coverage) (Vovk 2012), whatever the model, so the
    m rows' hits are beta-binomial (a frozen scipy law). Needs k <= n."""
    from scipy import stats

    k = int(np.ceil((n + 1) * coverage))
    return stats.betabinom(m, k, n + 1 - k)


def coverage_range(n: int, m: int, coverage: float, share: float = 0.95) -> tuple[float, float]:
    """The central ``share`` of the coverage that split conformal sets, calibrated on n scores,
    reach on m rows exchangeable with them (``coverage_law``): a few hundred validation rows
    leave a couple of points of play either way."""
    beyond = np.ceil((n + 1) * coverage) > n  # every label in every set
    if beyond or m < 1:
        return (1.0, 1.0) if beyond else (0.0, 1.0)  # or no rows
    law = coverage_law(n, m, coverage)
    tail = (1 - share) / 2
    return float(law.ppf(tail)) / m, float(law.ppf(1 - tail)) / m


@dataclass
class BaselineScore:
    """The TF-IDF + LR baseline fitted on the run's own training split, scored on the same rows
    as the model."""

    report: Report
    method: str
    note: str  # its C and feature count
    train_rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "note": self.note,
            "train_rows": self.train_rows,
            "fit_seconds": round(self.seconds, 2),
            **self.report.to_dict(),
        }


def evaluate(
    run_dir: str | Path,
    split: str = "test",
    data: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    text_column: str | list[str] | None = None,
    label_column: str | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
    quantize: str | None = None,
    baseline: bool = False,
    coverage: float = 0.9,
) -> Evaluation:
    """``precision``: auto (as the run was trained), fp32 or bf16; ``quantize="int8"``: dynamic
    int8 quantization (CPU). A report in another mode than the run's own gets its own files
    (``eval-test-int8.json``), so the default report is never overwritten. ``baseline``: also fit
    TF-IDF + logistic regression on the run's training split (C picked on its validation split)
    and score it on the same rows, in ``Evaluation.baseline`` and the JSON report.
    ``coverage``: the prediction sets of a single-label run that kept conformal scores are
    scored at this coverage (``Evaluation.sets``)."""
    loaded, mode, target = load_for_inference(run_dir, device, precision, quantize)
    recipe = loaded.recipe
    if data_root(data_dir) is None:
        data_dir = loaded.meta.get("data_dir")  # the mirror the run was trained from, if any
    dataset, name, notes = _rows(loaded, split, data, data_dir, text_column, label_column)
    texts = column(dataset, "text")
    ids = loaded.encoder.encode(texts)
    batch = batch_size or recipe.train.eval_batch_size
    logits, parts = _logits_and_parts(loaded.model, ids, batch, target, mode)
    if mode != loaded.meta.get("precision", recipe.train.precision):  # not as it was trained
        name = f"{name}-{mode}"
    decision = loaded.decision
    truth = _truth(dataset, loaded)
    result = scored(decision, logits, truth, loaded.labels)
    alone = None if decision.multi_label else _parts_accuracy(parts, truth)
    linear = fit_baseline(loaded, data_dir, dataset, truth) if baseline else None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    json_path = loaded.run_dir / f"eval-{safe}.json"
    plot = "labels" if decision.multi_label else "confusion"
    plot_path = loaded.run_dir / f"eval-{safe}-{plot}.png"
    summary = {"run": str(loaded.run_dir), "evaluated_on": name, "precision": mode, "notes": notes}
    extra: dict[str, Any] = {} if linear is None else {"baseline": linear.to_dict()}
    if alone is not None:
        extra["parts_accuracy"] = alone
    probabilities = decision.probabilities(logits)
    sets = _sets(decision, probabilities, truth, coverage, split == "validation" and data is None)
    if sets is not None:
        extra["sets"] = asdict(sets)
    if decision.multi_label:
        extra["thresholds"] = decision.to_dict(loaded.labels)["thresholds"]
    extra["calibration"] = calibrated = _calibration(decision, logits, truth)
    write_text(json_path, json.dumps({**summary, **result.to_dict(), **extra}, indent=2))
    plot_confusion(result, plot_path, f"{loaded.recipe.name}: {name}")
    raw = replace(decision, temperature=(1.0,)).probabilities(logits)
    return Evaluation(
        result, name, json_path, plot_path, notes, mode, linear, alone, texts, truth,
        probabilities, raw, sets, calibrated, decision.thresholds,
    )  # fmt: skip


def _rows(
    loaded: Loaded,
    split: str,
    data: str | None,
    data_dir: str | Path | None,
    text_column: str | list[str] | None,
    label_column: str | None,
) -> tuple[Any, str, list[str]]:
    """The labelled rows to evaluate on: a split of the run's own data, or other data."""
    columns = {"text": text_column, "label": label_column}
    cfg = loaded.recipe.data.model_copy(update={k: v for k, v in columns.items() if v is not None})
    if data is None:
        dataset, name, notes = _own_split(loaded, cfg, split, data_dir)
    else:
        dataset, name, notes = _other_data(loaded, cfg, data, split, data_dir)
    if len(dataset) == 0:
        raise DataError(f"{name}: no labelled rows to evaluate on")
    return dataset, name, notes


def _sets(
    decision: Decision, probabilities: np.ndarray, truth: np.ndarray, coverage: float, own: bool
) -> SetScore | None:
    """The sets scored on these rows; ``own``: they are the validation rows the conformal
    scores came from (no range of draws to promise then)."""
    if not 0 < coverage < 1:
        check_coverage(coverage, decision, "")  # the line that says what a coverage is
    if decision.multi_label or not decision.conformal:
        return None
    picked = decision.sets(probabilities, coverage)
    held = picked[np.arange(len(truth)), truth]
    expected = None if own else coverage_range(len(decision.conformal), len(truth), coverage)
    return SetScore(coverage, float(held.mean()), float(picked.sum(axis=1).mean()), expected)


def _calibration(decision: Decision, logits: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The expected calibration error of the scores before and after the run's temperature."""
    raw = replace(decision, temperature=(1.0,)).probabilities(logits)
    return {
        "temperature": list(decision.temperature)
        if len(decision.temperature) > 1
        else decision.temperature[0],
        "ece_before": calibration(raw, truth).ece,
        "ece_after": calibration(decision.probabilities(logits), truth).ece,
    }


def _truth(dataset: Any, loaded: Loaded) -> np.ndarray:
    """Class ids (rows,), or for a multi-label run (rows, labels) 0/1 floats."""
    values = column(dataset, "label")
    if loaded.decision.multi_label:
        return multi_hot(values, len(loaded.labels))
    return np.asarray(values)


def scored(decision: Decision, logits: np.ndarray, truth: np.ndarray, labels: list[str]) -> Report:
    """The report of logits (rows, labels) against the truth, decided as the run decides."""
    scores = torch.from_numpy(logits).float()
    if decision.multi_label:
        target = torch.from_numpy(truth)
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(scores, target))
        chosen = decision.chosen(decision.probabilities(logits))
        return multi_report(truth.astype(bool), chosen, labels, loss)
    loss = float(torch.nn.functional.cross_entropy(scores, torch.from_numpy(truth)))
    return report(truth, logits.argmax(axis=1), labels, loss)


def _parts_accuracy(
    parts: dict[str, np.ndarray] | None, truth: np.ndarray
) -> dict[str, float] | None:
    if parts is None:
        return None
    return {name: float((scores.argmax(1) == truth).mean()) for name, scores in parts.items()}


def _logits_and_parts(
    model: torch.nn.Module, ids: Sequence[np.ndarray], batch: int, target: torch.device, mode: str
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """The model's logits, and for a model with ``model.wide`` its two parts' own scores: the
    network's logits and the linear scores, joined here at the model's weights (one pass of the
    network, as without them)."""
    wide = getattr(model, "wide", None)
    if not isinstance(wide, WideNgrams):
        return logits_for(model, ids, batch, target, mode), None
    network_weight, scale = network_alone(wide)
    try:
        network = logits_for(model, ids, batch, target, mode)
    finally:
        wide.network.fill_(network_weight)
        wide.scale.fill_(scale)
    linear = linear_scores(wide, ids, batch, target)
    joined = network_weight * network + scale * linear
    return joined, {"network": network, "linear": linear}


def fit_baseline(
    loaded: Loaded, data_dir: str | Path | None, dataset: Any, truth: np.ndarray
) -> BaselineScore:
    """TF-IDF + LR fitted on the run's own training split, as the recipe loads it (the training
    rows only; the validation rows pick C), and scored on ``dataset``; on character 1-3 grams
    where the run reads text without spaces between words."""
    from textlstm.evaluation.baselines import analyzer_for, fit_one_vs_rest, fit_tfidf_lr

    splits = load_splits(loaded.recipe.data, data_dir, loaded.recipe.seed)
    if splits.labels != loaded.labels:
        raise DataError(
            f"{splits.source}: labels {splits.labels} differ from the run's {loaded.labels}; "
            f"the baseline needs the data the run was trained on (drop {param('baseline')})"
        )
    val = splits["validation"] if "validation" in splits.names else None
    fit = fit_one_vs_rest if splits.multi_label else fit_tfidf_lr
    try:
        fitted = fit(
            column(splits["train"], "text"),
            _truth(splits["train"], loaded),
            column(val, "text") if val is not None else [],
            _truth(val, loaded) if val is not None else None,
            analyzer_for(loaded.recipe.tokenizer.kind),
        )
    except ValueError as exc:  # scikit-learn's: no n-gram seen twice, for one
        raise DataError(
            f"{splits.source}: the baseline cannot be fitted on the training split ({exc})"
        ) from None
    predicted = np.asarray(fitted.predict(column(dataset, "text")))
    if splits.multi_label:
        result = multi_report(truth.astype(bool), predicted, loaded.labels)
    else:
        result = report(truth, predicted, loaded.labels)
    return BaselineScore(result, fitted.method, fitted.note, fitted.train_rows, fitted.seconds)


def _own_split(
    loaded: Loaded, cfg: DataConfig, split: str, data_dir: str | Path | None
) -> tuple[Any, str, list[str]]:
    """One of the splits the run was trained with, carved again exactly as then."""
    splits = load_splits(cfg, data_dir, loaded.recipe.seed)
    notes = list(splits.notes)
    if split not in splits.names:
        raise DataError(
            f"{splits.source}: no '{split}' split to evaluate on (splits: "
            f"{', '.join(splits.names)}); pass {param('split')} or {param('data')}"
        )
    if splits.labels != loaded.labels:
        raise DataError(
            f"{splits.source}: labels {splits.labels} differ from the run's {loaded.labels}"
        )
    if splits.fingerprint() != loaded.meta.get("data_fingerprint"):
        notes.append("the data differ from what this run was trained on")
    return splits[split], split, notes


def _other_data(
    loaded: Loaded, cfg: DataConfig, data: str, split: str, data_dir: str | Path | None
) -> tuple[Any, str, list[str]]:
    """Other labelled data (a hub id, folder or file), labelled with the run's own labels."""
    raw, source, notes, _ = load_raw(data, cfg.config, data_dir, Path.cwd())
    chosen = split if split in raw else (next(iter(raw)) if len(raw) == 1 else None)
    if chosen is None:
        raise DataError(
            f"{source}: no '{split}' split (splits: {', '.join(raw)}); pass {param('split')}"
        )
    label_names(raw[chosen], cfg, source, chosen)  # checks the label column exists
    dataset = normalize(raw[chosen], cfg, loaded.labels, source, chosen, notes)
    name = Path(data).stem if Path(data).suffix else data.replace("/", "_")
    if chosen != "train" or len(raw) > 1:
        name = f"{name}-{chosen}"
    return dataset, name, notes


def plot_confusion(result: Report, path: Path, title: str) -> None:
    """The confusion matrix, or for a multi-label report each label's F1 and support."""
    from textlstm.run.plots import confusion, label_scores

    (label_scores if result.multi_label else confusion)(result, path, title)
