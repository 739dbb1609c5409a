"""``textlstm report RUN``: one self-contained HTML file about a run: its recipe, its data, how
training went, per-class scores and the confusion matrix on a split (for a multi-label run, each
label's scores and threshold), calibration (reliability diagrams and the expected calibration
error before and after the run's temperature) and the most confident mistakes with their texts.
The plots are embedded as data URIs; the page loads nothing from the network."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.files import write_text
from textlstm.run.plots import Calibration, calibration, learning_curves, reliability

MISTAKES = 10  # the most confident mistakes listed
TEXT_CHARS = 600  # of each mistake's text shown

STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.25em "
    "0.6em;text-align:left;vertical-align:top}th{background:#f3f3f3}pre{background:#f7f7f7;"
    "padding:0.8em;overflow-x:auto}img{max-width:100%}nav a{margin-right:1em}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
)
SECTIONS = (
    ("recipe", "Recipe"),
    ("data", "Data"),
    ("training", "Training"),
    ("scores", "Scores"),
    ("confusion", "Confusion matrix or labels"),
    ("calibration", "Calibration"),
    ("mistakes", "Most confident mistakes"),
)


@dataclass
class Written:
    path: Path
    split: str
    accuracy: float
    ece: float  # after calibration
    mistakes: int  # wrong rows in the split (multi-label: rows whose labels are not all right)
    ece_before: float = 0.0  # the network's own scores


def write_report(
    run_dir: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    output: str | Path | None = None,
    device: str = "auto",
) -> Written:
    """Evaluate the run on ``split`` (as ``textlstm evaluate`` does, which also writes its JSON
    and confusion plot) and write ``report-<split>.html`` in the run folder, or ``output``."""
    from textlstm.evaluation.evaluate import evaluate

    done = evaluate(run_dir, split, data_dir=data_dir, device=device)
    folder = done.json_path.parent  # the run folder, checked by evaluate
    assert done.probabilities is not None and done.truth is not None and done.texts is not None
    assert done.raw_probabilities is not None
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    plots = []
    for when, probabilities in (("before", done.raw_probabilities), ("after", done.probabilities)):
        calib = calibration(probabilities, done.truth)
        png = folder / f"eval-{done.name}-reliability-{when}.png"
        title = f"{meta.get('name', folder.name)}: {done.name}, {when} calibration"
        reliability(calib, png, title)
        plots.append((calib, png))
    page = _page(folder, meta, done, plots)
    path = Path(output) if output is not None else folder / f"report-{done.name}.html"
    write_text(path, page)
    wrong = int((~_right(done)).sum())
    return Written(path, done.name, done.report.accuracy, plots[1][0].ece, wrong, plots[0][0].ece)


def _right(done: Any) -> np.ndarray:
    """Per row: whether the labels given are the true ones."""
    if done.report.multi_label:
        given = done.probabilities >= np.asarray(done.thresholds)
        return np.asarray((given == (done.truth > 0)).all(axis=1))
    return np.asarray(done.probabilities.argmax(1) == done.truth)


def _page(
    folder: Path, meta: dict[str, Any], done: Any, plots: list[tuple[Calibration, Path]]
) -> str:
    curves = folder / "learning-curves.png"
    history = _history(folder)
    if not curves.is_file() and history:  # a run from before the curves were written
        curves = folder / "report-learning-curves.png"
        title = f"{meta.get('name', folder.name)}: kept epoch {meta.get('best_epoch')}"
        learning_curves(history, meta.get("metric", "accuracy"), curves, title)
    body = [
        _header(folder, meta, done.name),
        _section("recipe", f"<pre>{html.escape(_read(folder / 'recipe.toml'), quote=False)}</pre>"),
        _section("data", _data(meta, folder)),
        _section("training", _training(meta, history, curves)),
        _section("scores", _scores(done)),
        _section("confusion", _image(done.plot_path, "confusion matrix or per-label scores")),
        _section("calibration", _calibration(plots, done)),
        _section("mistakes", _mistakes(done)),
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>textlstm report: '
        f"{html.escape(folder.name)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else "(missing)"


def _history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _section(key: str, content: str) -> str:
    title = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>\n{content}\n</section>'


def _header(folder: Path, meta: dict[str, Any], split: str) -> str:
    links = " ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title in SECTIONS)
    made = html.escape(str(meta.get("created", "")))
    return (
        f"<h1>{html.escape(str(meta.get('name', folder.name)))}: {html.escape(split)}</h1>\n"
        f"<p>Run folder <code>{html.escape(str(folder))}</code>, trained {made}; "
        f"textlstm {html.escape(str(meta.get('textlstm', '?')))}, "
        f"torch {html.escape(str(meta.get('torch', '?')))}.</p>\n<nav>{links}</nav>"
    )


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    lines = [f"<table><tr>{cells}</tr>"]
    for row in rows:
        tds = "".join(
            f'<td class="num">{v}</td>' if isinstance(v, (int, float)) else f"<td>{v}</td>"
            for v in row
        )
        lines.append(f"<tr>{tds}</tr>")
    return "\n".join(lines) + "</table>"


def _data(meta: dict[str, Any], folder: Path) -> str:
    labels = json.loads(_read(folder / "labels.json")) if (folder / "labels.json").is_file() else []
    vocab = meta.get("vocabulary") or {}
    rows: list[list[Any]] = [
        [html.escape(split), f"{count:,}"] for split, count in meta.get("split_rows", {}).items()
    ]
    coverage = vocab.get("vectors_coverage")
    return (
        f"<p>Source: <code>{html.escape(str(meta.get('data_source', '?')))}</code>. "
        f"Labels ({len(labels)}): {html.escape(', '.join(map(str, labels)))}. "
        f"Vocabulary: {html.escape(str(vocab.get('origin', '?')))}"
        + (f"; pretrained vectors cover {html.escape(json.dumps(coverage))}" if coverage else "")
        + ".</p>\n"
        + _table(["split", "rows"], rows)
    )


def _training(meta: dict[str, Any], history: list[dict[str, Any]], curves: Path) -> str:
    metric = meta.get("metric", "accuracy")
    rows = [
        [
            row["epoch"], f"{row['train_loss']:.4f}", f"{row['validation_loss']:.4f}",
            f"{100 * row[metric]:.2f} %", f"{row['seconds']:.0f} s",
            "kept" if row["epoch"] == meta.get("best_epoch") else "",
        ]
        for row in history
    ]  # fmt: skip
    seconds = meta.get("train_seconds", 0)
    said = {k: html.escape(str(meta.get(k, "?"))) for k in ("stopped", "precision", "device")}
    intro = (
        f"<p>{len(history)} epoch(s) in {seconds:.0f} s ({said['stopped']}); the weights of "
        f"epoch {meta.get('best_epoch')} are kept; {said['precision']} on {said['device']}.</p>"
    )
    head = ["epoch", "training loss", "validation loss", f"validation {metric}", "time", ""]
    return intro + _image(curves, "learning curves") + _table(head, rows)


def _scores(done: Any) -> str:
    rep = done.report
    rows: list[list[Any]] = [
        [html.escape(c.label), f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", c.support]
        for c in rep.per_class
    ]
    head = ["label", "precision", "recall", "F1", "support"]
    if rep.multi_label:  # each label's own threshold, tuned on the validation split
        head.append("threshold")
        for row, threshold in zip(rows, done.thresholds):
            row.append(f"{threshold:.3f}")
        scores = (
            f"micro-F1 <b>{rep.metric('micro_f1'):.2%}</b>, macro-F1 <b>{rep.macro_f1:.2%}</b>, "
            f"subset accuracy {rep.accuracy:.2%}"
        )
    else:
        scores = f"accuracy <b>{rep.accuracy:.2%}</b>, macro-F1 {rep.macro_f1:.2%}"
    sets = done.sets
    return (
        f"<p>{rep.rows:,} rows of <b>{html.escape(done.name)}</b>: {scores}"
        + (f", loss {rep.loss:.4f}" if rep.loss is not None else "")
        + f" ({html.escape(done.precision)}).</p>\n"
        + (
            f"<p>Prediction sets at coverage {sets.coverage:.0%}: {sets.empirical:.2%} of the "
            f"rows' sets hold their true label{sets.expected_text()}; "
            f"{sets.mean_size:.2f} labels a set on average.</p>\n"
            if sets is not None
            else ""
        )
        + _table(head, rows)
    )


def _calibration(plots: list[tuple[Calibration, Path]], done: Any) -> str:
    (before, before_png), (after, after_png) = plots
    rows = [
        [f"{b['lower']:.1f}-{b['upper']:.1f}", int(b["count"]), f"{b['confidence']:.3f}",
         f"{b['accuracy']:.3f}"]
        for b in after.bins
    ]  # fmt: skip
    what = (
        "every label's score against whether the row has the label"
        if done.report.multi_label
        else "the top score against whether it is the true label"
    )
    return (
        f"<p>Expected calibration error <b>{after.ece:.4f}</b> with the run's temperature, "
        f"{before.ece:.4f} with the network's own scores (the gap between confidence and "
        f"accuracy, averaged over the rows of each confidence bin; {what}). The temperature "
        "was fitted on the validation split.</p>\n"
        + _image(before_png, "reliability diagram before calibration")
        + _image(after_png, "reliability diagram after calibration")
        + _table(["confidence", "rows", "mean confidence", "accuracy"], rows)
    )


def _mistakes(done: Any) -> str:
    texts, truth, probs, labels = done.texts, done.truth, done.probabilities, done.report.labels
    wrong = np.flatnonzero(~_right(done))
    if len(wrong) == 0:
        return "<p>No mistakes on this split.</p>"
    if done.report.multi_label:  # the surest of the wrong rows: the highest wrong score
        given = probs >= np.asarray(done.thresholds)
        off = np.where(given != (truth > 0), np.maximum(probs, 1 - probs), 0.0).max(axis=1)
        order = wrong[np.argsort(-off[wrong], kind="stable")][:MISTAKES]
        named = [
            (", ".join(labels[j] for j in np.flatnonzero(truth[i])),
             ", ".join(labels[j] for j in np.flatnonzero(given[i])), off[i])
            for i in order
        ]  # fmt: skip
    else:
        predicted = probs.argmax(1)
        order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:MISTAKES]
        named = [(labels[truth[i]], labels[predicted[i]], probs[i, predicted[i]]) for i in order]
    rows = []
    for i, (true, predicted_, confidence) in zip(order, named):
        text = texts[i] if len(texts[i]) <= TEXT_CHARS else texts[i][:TEXT_CHARS] + " ..."
        rows.append(
            [int(i), html.escape(true), html.escape(predicted_), f"{confidence:.3f}",
             html.escape(text)]
        )  # fmt: skip
    return f"<p>{len(wrong):,} wrong rows; the {len(rows)} the model was surest of:</p>\n" + _table(
        ["row", "true", "predicted", "confidence", "text"], rows
    )


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p>({html.escape(alt)}: no plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'
