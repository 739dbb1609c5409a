"""``textlstm check``: a recipe validated and resolved, and a summary of its data."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.table import Table

from textlstm.cli.app import DataDir, Overrides, RecipeFile, app, guarded, note, out


@app.command()
@guarded
def check(recipe: RecipeFile, overrides: Overrides = None, data_dir: DataDir = None) -> None:
    """Validate a recipe, print it resolved and summarize its data, without training."""
    from textlstm.data.summary import PERCENTILES, summarize
    from textlstm.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    out.print(f"[green]ok[/green] {recipe} is valid; resolved recipe:")
    out.print(Syntax(loaded.to_toml(), "toml", theme="ansi_dark", background_color="default"))
    summary = summarize(loaded, data_dir)
    for line in summary.notes:
        note(f"note: {line}")
    counts = Table(
        "label",
        *[s.name for s in summary.splits],
        title=f"data: {summary.source}",
        title_justify="left",
    )
    counts.add_row("[bold]rows[/bold]", *[f"{s.rows:,}" for s in summary.splits])
    for label in summary.labels:
        counts.add_row(label, *[f"{s.label_counts[label]:,}" for s in summary.splits])
    out.print(counts)
    lengths = Table(
        "split",
        *["max" if p == 100 else f"p{p}" for p in PERCENTILES],
        f"> max_length ({loaded.tokenizer.max_length})",
        title=f"text length in {summary.unit} (before truncation)",
        title_justify="left",
    )
    for s in summary.splits:
        lengths.add_row(
            s.name,
            *[f"{s.length_percentiles[p]:,}" for p in PERCENTILES],
            f"{s.truncated_share:.1%}",
        )
    out.print(lengths)
