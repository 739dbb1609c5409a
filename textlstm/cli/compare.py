"""``textlstm compare``: runs side by side, the recipe keys that differ and the scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from textlstm.cli.app import app, guarded, out


@app.command()
@guarded
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more finished run folders.")],
) -> None:
    """The recipe keys whose values differ between the runs, then their scores."""
    from textlstm.report.compare import compare as compare_runs

    done = compare_runs(list(runs))
    names = [r.name if r.name != "latest" else str(r) for r in done.runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in done.runs]
    table = Table("", *names, title="recipe keys that differ", title_justify="left")
    for key, values in done.differing.items():
        table.add_row(key, *values)
    if not done.differing:
        out.print("the recipes are the same")
    else:
        out.print(table)
    scores = Table("", *names, title="scores", title_justify="left")
    for key, values in done.scores.items():
        scores.add_row(key, *values)
    out.print(scores)
