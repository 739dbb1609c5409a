"""``textlstm check``: a recipe validated and resolved, and a summary of its data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.syntax import Syntax
from rich.table import Table

from textlstm.cli.app import DataDir, Overrides, RecipeFile, app, guarded, note, out

if TYPE_CHECKING:
    from textlstm.data.summary import DataSummary


@app.command()
@guarded
def check(recipe: RecipeFile, overrides: Overrides = None, data_dir: DataDir = None) -> None:
    """Validate a recipe, print it resolved and summarize its data, without training."""
    from textlstm.data.summary import summarize
    from textlstm.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    out.print(f"[green]ok[/green] {recipe} is valid; resolved recipe:")
    out.print(Syntax(loaded.to_toml(), "toml", theme="ansi_dark", background_color="default"))
    summary = summarize(loaded, data_dir)
    for line in summary.notes:
        note(f"note: {line}")
    show_summary(summary, loaded.tokenizer.max_length)


def show_summary(summary: DataSummary, max_length: int) -> None:
    """Rows per label and split, then text lengths and the share over ``max_length``."""
    from textlstm.data.starter import SKEW
    from textlstm.data.summary import PERCENTILES

    shape = " (multi-label: a row counts for each of its labels)" if summary.multi_label else ""
    counts = Table(
        "label",
        *[s.name for s in summary.splits],
        title=f"data: {summary.source}{shape}",
        title_justify="left",
    )
    counts.add_row("[bold]rows[/bold]", *[f"{s.rows:,}" for s in summary.splits])
    for label in summary.labels:
        counts.add_row(label, *[f"{s.label_counts[label]:,}" for s in summary.splits])
    out.print(counts)
    train = summary.splits[0].label_counts
    (big, most), (small, least) = (
        max(train.items(), key=lambda kv: kv[1]),
        min(train.items(), key=lambda kv: kv[1]),
    )
    if most >= SKEW * max(least, 1):
        weights = 'train.class_weights = "balanced"'
        note(
            f"note: the classes are skewed: {big!r} has {most:,} training rows, {small!r} "
            f'{least:,}; consider {weights} and train.metric = "macro_f1"'
        )
    lengths = Table(
        "split",
        *["max" if p == 100 else f"p{p}" for p in PERCENTILES],
        f"> max_length ({max_length})",
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
