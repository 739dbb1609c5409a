"""``textlstm init``: a starting recipe chosen from a dataset's statistics, each choice with its
reason (spaCy's ``init config`` is the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from textlstm.cli.app import DataDir, app, guarded, note, out

Dataset = Annotated[
    str, typer.Argument(help="Hub id, local folder or data file, as [data] dataset.")
]
TextColumn = Annotated[str | None, typer.Option("--text", help="Text column (default: text).")]
LabelColumn = Annotated[str | None, typer.Option("--label", help="Label column (default: label).")]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Recipe file to write (default: <name>.toml).")
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing recipe file.")]


@app.command()
@guarded
def init(
    dataset: Dataset,
    text: TextColumn = None,
    label: LabelColumn = None,
    output: Output = None,
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """Write a starting recipe for a dataset, each setting chosen from the data with its reason."""
    from rich.markup import escape

    from textlstm.data.starter import write_starting_recipe

    done = write_starting_recipe(dataset, output, text, label, data_dir, force)
    for line in done.notes:
        note(f"note: {line}")
    table = Table(
        "key", "value", "why", title=f"starting recipe for {dataset}", title_justify="left"
    )
    for choice in done.choices:
        table.add_row(choice.key, escape(str(choice.value)), escape(choice.reason))
    out.print(table)
    out.print(
        f"[green]wrote[/green] {escape(str(done.path))}; next: textlstm train "
        f"{escape(str(done.path))}",
        soft_wrap=True,
    )
