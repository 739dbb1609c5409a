"""``textlstm report RUN``: one self-contained HTML file about a run: its recipe, its data, how
training went, per-class scores and the confusion matrix on a split, calibration (a reliability
diagram and the expected calibration error) and the most confident mistakes with their texts.
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
    ("confusion", "Confusion matrix"),
    ("calibration", "Calibration"),
    ("mistakes", "Most confident mistakes"),
)


@dataclass
class Written:
    path: Path
    split: str
    accuracy: float
    ece: float
    mistakes: int  # wrong rows in the split


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
    calib = calibration(done.probabilities, done.truth)
    reliability_png = folder / f"eval-{done.name}-reliability.png"
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    reliability(calib, reliability_png, f"{meta.get('name', folder.name)}: {done.name}")
    page = _page(folder, meta, done, calib, reliability_png)
    path = Path(output) if output is not None else folder / f"report-{done.name}.html"
    write_text(path, page)
    wrong = int((done.probabilities.argmax(1) != done.truth).sum())
    return Written(path, done.name, done.report.accuracy, calib.ece, wrong)


def _page(folder: Path, meta: dict[str, Any], done: Any, calib: Calibration, png: Path) -> str:
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
        _section("confusion", _image(done.plot_path, "confusion matrix")),
        _section("calibration", _calibration(calib, png)),
        _section("mistakes", _mistakes(done.texts, done.truth, done.probabilities, done.report)),
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
    rows = [
        [html.escape(c.label), f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", c.support]
        for c in rep.per_class
    ]
    return (
        f"<p>{rep.rows:,} rows of <b>{html.escape(done.name)}</b>: accuracy "
        f"<b>{rep.accuracy:.2%}</b>, macro-F1 {rep.macro_f1:.2%}"
        + (f", loss {rep.loss:.4f}" if rep.loss is not None else "")
        + f" ({html.escape(done.precision)}).</p>\n"
        + _table(["label", "precision", "recall", "F1", "support"], rows)
    )


def _calibration(calib: Calibration, png: Path) -> str:
    rows = [
        [f"{b['lower']:.1f}-{b['upper']:.1f}", int(b["count"]), f"{b['confidence']:.3f}",
         f"{b['accuracy']:.3f}"]
        for b in calib.bins
    ]  # fmt: skip
    return (
        f"<p>Expected calibration error <b>{calib.ece:.4f}</b> (the gap between confidence and "
        "accuracy, averaged over the rows of each confidence bin).</p>\n"
        + _image(png, "reliability diagram")
        + _table(["confidence", "rows", "mean confidence", "accuracy"], rows)
    )


def _mistakes(texts: list[str], truth: np.ndarray, probs: np.ndarray, rep: Any) -> str:
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != truth)
    if len(wrong) == 0:
        return "<p>No mistakes on this split.</p>"
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:MISTAKES]
    rows = []
    for i in order:
        text = texts[i] if len(texts[i]) <= TEXT_CHARS else texts[i][:TEXT_CHARS] + " ..."
        rows.append(
            [int(i), html.escape(rep.labels[truth[i]]), html.escape(rep.labels[predicted[i]]),
             f"{probs[i, predicted[i]]:.3f}", html.escape(text)]
        )  # fmt: skip
    return f"<p>{len(wrong):,} wrong rows; the {len(rows)} the model was surest of:</p>\n" + _table(
        ["row", "true", "predicted", "confidence", "text"], rows
    )


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p>({html.escape(alt)}: no plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'
