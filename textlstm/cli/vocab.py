"""``textlstm vocab``: a recipe's vocabulary (or subword tokenizer) built into the vocab store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from textlstm.cli.app import (
    CacheDir,
    DataDir,
    NoCache,
    Overrides,
    RecipeFile,
    VocabDir,
    app,
    guarded,
    note,
    options,
    out,
)


@app.command()
@guarded
def vocab(
    recipe: RecipeFile,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    vocab_dir: VocabDir = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    top: Annotated[int, typer.Option(help="How many frequent tokens to show.")] = 20,
) -> None:
    """Build a recipe's vocabulary (or subword tokenizer) into --vocab-dir for runs to reuse."""
    from textlstm.data.summary import build_vocabulary
    from textlstm.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    summary = build_vocabulary(loaded, data_dir, options(vocab_dir, cache_dir, no_cache), top)
    for message in summary.messages:
        note(f"note: {message}")
    action = (
        "wrote" if summary.written else "up to date:" if loaded.vocab.path is None else "pinned:"
    )
    out.print(f"[green]{action}[/green] [bold]{summary.path}[/bold]", soft_wrap=True)
    out.print(
        f"{summary.kind} vocabulary: {summary.size:,} entries; {summary.train_tokens:,} "
        f"training tokens; {summary.validation_oov:.2%} of validation tokens are "
        "out of vocabulary (<unk>)"
    )
    table = Table("token", "count", title="most frequent training tokens", title_justify="left")
    for token, count in summary.top:
        table.add_row(repr(token)[1:-1], f"{count:,}")
    out.print(table)
