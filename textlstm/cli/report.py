"""``textlstm report``: one self-contained HTML page about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textlstm.cli.app import DataDir, Device, app, guarded, out


@app.command()
@guarded
def report(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    split: Annotated[str, typer.Option(help="Split to evaluate and report on.")] = "test",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write here (default: report-<split>.html in the run)."
        ),
    ] = None,
    data_dir: DataDir = None,
    device: Device = "auto",
) -> None:
    """An HTML page with the recipe, the data, the learning curves, per-class scores, the
    confusion matrix, calibration and the most confident mistakes; plots embedded, nothing
    loaded from the network."""
    from textlstm.report.page import write_report

    done = write_report(run, split, data_dir, output, device)
    out.print(
        f"{done.split}: accuracy {done.accuracy:.2%}, expected calibration error "
        f"{done.ece:.4f} ({done.ece_before:.4f} before calibration), {done.mistakes:,} mistakes"
    )
    out.print(f"report: [bold]{done.path}[/bold]", soft_wrap=True)
