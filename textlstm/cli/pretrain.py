"""``textlstm pretrain``: a recipe in, a language-model run folder out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from textlstm import settings
from textlstm.cli.app import (
    DataDir,
    Device,
    Overrides,
    TensorBoard,
    Threads,
    app,
    guarded,
    out,
    under_torchrun,
)
from textlstm.cli.progress import PretrainProgress, logged

if TYPE_CHECKING:
    from textlstm.lm.events import PretrainResult


@app.command()
@guarded
def pretrain(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe .toml file.")] = None,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Parent folder of run folders.")
    ] = settings.RUNS_DIR,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            min=0.01,
            help="Stop after this many minutes of training (default: pretrain.max_minutes); "
            "the learning-rate schedule spans the budget.",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue a killed (.partial) or interrupted pretraining."),
    ] = None,
    tensorboard: TensorBoard = None,
    threads: Threads = None,
) -> None:
    """Pretrain the recipe's LSTM language model on its training texts (and \\[pretrain]
    unlabelled ones); writes a run folder under --out/<recipe name>-lm/ for \\[model] encoder."""
    from textlstm import threads as cpu
    from textlstm.lm import pretrain_or_resume

    cpu.choose(threads)
    launched_here = under_torchrun()  # then ranks other than 0 print nothing but errors
    with PretrainProgress() as progress, logged(progress, tensorboard) as events:
        result = pretrain_or_resume(
            recipe, resume, overrides=overrides, max_minutes=max_minutes, out_dir=out_dir,
            data_dir=data_dir, device=device, events=events,
        )  # fmt: skip
    summary(result, launched_here)


def summary(result: PretrainResult, launched_here: bool) -> None:
    last = result.epochs[-1] if result.epochs else None
    shown = f"; held-out perplexity {last.perplexity:.1f}" if last else ""
    if last is not None and last.backward_perplexity is not None:
        shown += f" (backward {last.backward_perplexity:.1f})"
    out.print(
        f"[green]done[/green] in {result.seconds:.0f}s ({result.stopped}), "
        f"{result.tokens:,} tokens{shown}"
    )
    out.print(f"run folder: [bold]{result.run_dir}[/bold]", soft_wrap=True)
    if result.stopped == "interrupted":
        again = "torchrun ... -m textlstm pretrain" if launched_here else "textlstm pretrain"
        out.print(f"continue with: {again} --resume {result.run_dir}", soft_wrap=True)
    out.print(f'next: set \\[model] encoder = "{result.run_dir.parent / "latest"}" in a recipe')
