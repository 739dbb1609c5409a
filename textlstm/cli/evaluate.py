"""``textlstm evaluate``: a finished run scored on one of its splits or on other labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from textlstm.cli.app import DataDir, Device, Precision, Quantize, app, guarded, note, out


@app.command()
@guarded
def evaluate(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
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
) -> None:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a run."""
    from textlstm.evaluation import evaluate as evaluate_run

    result = evaluate_run(
        run,
        split,
        data,
        data_dir,
        device,
        text_column,
        label_column,
        precision=precision,
        quantize=quantize,
    )
    for line in result.notes:
        note(f"note: {line}")
    rep = result.report
    out.print(
        f"[bold]{result.name}[/bold] ({result.precision}): {rep.rows:,} rows, accuracy "
        f"[bold]{rep.accuracy:.2%}[/bold], macro-F1 [bold]{rep.macro_f1:.2%}[/bold], "
        f"loss {rep.loss:.4f}"
    )
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
    matrix = Table("true \\ predicted", *rep.labels, title="confusion matrix", title_justify="left")
    for label, counts in zip(rep.labels, rep.confusion):
        matrix.add_row(label, *[f"{c:,}" for c in counts])
    out.print(matrix)
    out.print(f"report: {result.json_path}\nconfusion plot: {result.plot_path}")
