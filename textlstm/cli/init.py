"""``textlstm init``: a starting recipe chosen from a dataset's statistics, each choice with its
reason (spaCy's ``init config`` is the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
Minutes = Annotated[
    float | None,
    typer.Option(
        "--minutes",
        min=0.1,
        help="Training time to fit the recipe into (default: 10 up to 20,000 texts, 30 up to "
        "100,000, 60 beyond).",
    ),
]


@app.command()
@guarded
def init(
    dataset: Dataset,
    text: TextColumn = None,
    label: LabelColumn = None,
    output: Output = None,
    data_dir: DataDir = None,
    force: Force = False,
    minutes: Minutes = None,
) -> None:
    """Write a starting recipe for a dataset, each setting chosen from the data with its reason."""
    from rich.markup import escape

    from textlstm.data.starter import write_starting_recipe

    done = write_starting_recipe(dataset, output, text, label, data_dir, force, minutes)
    for line in done.notes:
        note(f"note: {line}")
    table = Table(
        "key", "value", "why", title=f"starting recipe for {dataset}", title_justify="left"
    )
    for choice in done.choices:
        table.add_row(choice.key, escape(str(choice.value)), escape(choice.reason))
    out.print(table)
    if done.fitted is not None:
        note(expected_time(done.fitted))
    out.print(
        f"[green]wrote[/green] {escape(str(done.path))}; next: textlstm train "
        f"{escape(str(done.path))}",
        soft_wrap=True,
    )


def expected_time(fitted: Any) -> str:
    est, budget = fitted.estimate, fitted.budget_seconds / 60
    fits = f"within the budget of {budget:g} min"
    if est.seconds > fitted.budget_seconds:
        fits = f"over the budget of {budget:g} min even so: give more with --minutes"
    return (
        f"expected training time on this machine: about {est.seconds / 60:.1f} min "
        f"({est.epochs} epochs of {est.steps:,} steps at {1000 * est.step_seconds:.0f} ms a "
        f"step, timed now; early stopping often ends it sooner), {fits}"
    )
