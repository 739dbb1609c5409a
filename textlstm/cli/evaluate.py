"""``textlstm evaluate``: a finished run scored on one of its splits or on other labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from textlstm.cli.app import (
    DataDir,
    Device,
    Precision,
    Quantize,
    Threads,
    app,
    guarded,
    note,
    out,
)

if TYPE_CHECKING:
    from textlstm.evaluation.evaluate import BaselineScore, Evaluation
    from textlstm.run.metrics import Report
    from textlstm.tuning.folds import FoldsResult


Baseline = Annotated[
    bool,
    typer.Option(
        "--baseline",
        help="Also fit TF-IDF (1-2 grams) + logistic regression on the run's training split "
        "and score it on the same rows: does the LSTM earn its cost?",
    ),
]


@app.command()
@guarded
def evaluate(
    run: Annotated[
        Path, typer.Argument(help="A finished run folder, or a folder of `train --folds` runs.")
    ],
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
    data: Annotated[
        str | None,
        typer.Option(help="Other labelled data: hub id, folder or .csv/.tsv/.jsonl/.parquet file."),
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column in --data.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column in --data.")] = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    precision: Precision = "auto",
    quantize: Quantize = None,
    baseline: Baseline = False,
    coverage: Annotated[
        float,
        typer.Option(help="Score prediction sets at this coverage (single-label runs)."),
    ] = 0.9,
    threads: Threads = None,
) -> None:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a run (of each fold and
    their mean for a folder of cross-validation runs); calibration, and prediction sets."""
    from textlstm import threads as cpu
    from textlstm.evaluation.evaluate import evaluate as evaluate_run
    from textlstm.tuning.folds import evaluate_folds, is_folds_folder

    cpu.choose(threads)
    if is_folds_folder(run):
        show_folds(evaluate_folds(run, data_dir=data_dir, device=device, baseline=baseline))
        return
    result = evaluate_run(
        run, split, data, data_dir, device, text_column, label_column, precision=precision,
        quantize=quantize, baseline=baseline, coverage=coverage,
    )  # fmt: skip
    show_evaluation(result)


def show_evaluation(result: Evaluation) -> None:
    for line in result.notes:
        note(f"note: {line}")
    rep = result.report
    out.print(f"[bold]{result.name}[/bold] ({result.precision}): {rep.rows:,} rows, {_scores(rep)}")
    show_tables(rep)
    if result.parts_accuracy is not None:
        parts = result.parts_accuracy
        out.print(
            f"model.wide: the network alone {parts['network']:.2%}, the linear model alone "
            f"{parts['linear']:.2%} on the same rows"
        )
    if result.calibration is not None:
        c = result.calibration
        t = c["temperature"]
        shown = f"{t:.3f}" if isinstance(t, float) else f"{min(t):.2f} to {max(t):.2f}, per label"
        out.print(
            f"calibration: expected calibration error {c['ece_before']:.4f} before, "
            f"[bold]{c['ece_after']:.4f}[/bold] after (temperature {shown})"
        )
    if result.sets is not None:
        s = result.sets
        out.print(
            f"prediction sets at coverage {s.coverage:.0%}: [bold]{s.empirical:.2%}[/bold] of "
            f"the rows' sets hold their true label{s.expected_text()}, "
            f"{s.mean_size:.2f} labels a set on average"
        )
    if result.baseline is not None:
        show_baseline(result.baseline, rep)
    plot = "per-label plot" if rep.multi_label else "confusion plot"
    out.print(f"report: {result.json_path}\n{plot}: {result.plot_path}")


def _scores(rep: Report) -> str:
    loss = f", loss {rep.loss:.4f}" if rep.loss is not None else ""
    if rep.multi_label:
        return (
            f"micro-F1 [bold]{rep.metric('micro_f1'):.2%}[/bold], macro-F1 "
            f"[bold]{rep.macro_f1:.2%}[/bold], subset accuracy {rep.accuracy:.2%}{loss}"
        )
    accuracy = f"accuracy [bold]{rep.accuracy:.2%}[/bold]"
    return f"{accuracy}, macro-F1 [bold]{rep.macro_f1:.2%}[/bold]{loss}"


def show_baseline(linear: BaselineScore, rep: Report) -> None:
    key = "macro_f1" if rep.multi_label else "accuracy"  # multi-label: every label counts alike
    gap = 100 * (rep.metric(key) - linear.report.metric(key))
    if gap > 0:
        verdict = f"[green]the model is {gap:.2f} points above it[/green]"
    elif gap == 0:
        verdict = "[yellow]the model only matches it: a bag-of-words model would do here[/yellow]"
    else:
        verdict = (
            f"[yellow]the model is {-gap:.2f} points below it: a bag-of-words model would do "
            "here[/yellow]"
        )
    out.print(
        f"baseline {linear.method} (fitted on {linear.train_rows:,} training rows in "
        f"{linear.seconds:.1f} s, {linear.note}): {_scores(linear.report)}; {verdict}"
    )


def show_tables(rep: Report) -> None:
    scores = Table(
        "label", "precision", "recall", "F1", "support", title="per class", title_justify="left"
    )
    for row in rep.per_class:
        scores.add_row(
            row.label,
            f"{row.precision:.3f}",
            f"{row.recall:.3f}",
            f"{row.f1:.3f}",
            f"{row.support:,}",
        )
    out.print(scores)
    if rep.multi_label:
        return
    matrix = Table("true \\ predicted", *rep.labels, title="confusion matrix", title_justify="left")
    for label, counts in zip(rep.labels, rep.confusion):
        matrix.add_row(label, *[f"{c:,}" for c in counts])
    out.print(matrix)


def show_folds(result: FoldsResult) -> None:
    """Each fold's test scores, then their mean and standard deviation."""
    linear = bool(result.baseline)
    columns = ["fold", "accuracy", "macro-F1"] + (["TF-IDF + LR accuracy"] if linear else [])
    table = Table(
        *columns,
        title=f"{len(result.runs)}-fold cross-validation: each fold's run on its held-out rows",
        title_justify="left",
    )
    for i in range(len(result.runs)):
        row = [
            str(i + 1),
            f"{result.scores['accuracy'][i]:.2%}",
            f"{result.scores['macro_f1'][i]:.2%}",
        ]
        if linear:
            row.append(f"{result.baseline['accuracy'][i]:.2%}")
        table.add_row(*row)
    out.print(table)
    for name, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        line = (
            f"{label}: mean [bold]{result.mean(name):.2%}[/bold] ± {result.std(name):.2%} "
            "(sample std over the folds)"
        )
        if linear:
            line += f"; TF-IDF + LR {result.mean(name, True):.2%} ± {result.std(name, True):.2%}"
        out.print(line)
    out.print(f"folds folder: [bold]{result.folder}[/bold]", soft_wrap=True)
