"""``textlstm train``: a recipe (or a run to resume) in, a run folder out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from textlstm import settings
from textlstm.cli.app import (
    CacheDir,
    DataDir,
    Device,
    NoCache,
    Overrides,
    TensorBoard,
    Threads,
    VocabDir,
    app,
    guarded,
    options,
    out,
    under_torchrun,
)
from textlstm.cli.progress import TrainProgress, logged

if TYPE_CHECKING:
    from textlstm.text.cache import Options
    from textlstm.training import Events, TrainResult


Folds = Annotated[
    int,
    typer.Option(
        "--folds",
        min=0,
        max=100,
        help="K-fold cross-validation: a run per stratified fold of the train split, "
        "each tested on its held-out fold; prints the mean and std.",
    ),
]


@app.command()
@guarded
def train(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe .toml file.")] = None,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Parent folder of run folders.")
    ] = settings.RUNS_DIR,
    vocab_dir: VocabDir = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue a killed (.partial) or interrupted run folder."),
    ] = None,
    tensorboard: TensorBoard = None,
    folds: Folds = 0,
    threads: Threads = None,
) -> None:
    """Train a model from a recipe; writes a run folder under --out/<recipe name>/."""
    from textlstm import threads as cpu
    from textlstm.training import train_or_resume

    cpu.choose(threads)
    launched_here = under_torchrun()  # then ranks other than 0 print nothing but errors
    settings_ = options(vocab_dir, cache_dir, no_cache)
    with TrainProgress() as progress, logged(progress, tensorboard) as events:
        if folds:  # a run per fold: `textlstm.train_folds`
            where = (out_dir, data_dir, device, events, settings_)
            return cross_validate(recipe, resume, overrides, folds, *where)
        result = train_or_resume(
            recipe, resume, overrides, out_dir, data_dir, device, events, settings_
        )
    show_result(result, launched_here)


def show_result(result: TrainResult, launched_here: bool) -> None:
    best = result.epochs[result.best_epoch - 1]
    out.print(
        f"[green]done[/green] in {result.seconds:.0f}s ({result.stopped.replace('_', ' ')}); "
        f"best epoch {result.best_epoch}: validation "
        + (
            f"accuracy {best.accuracy:.2%}, macro-F1 {best.macro_f1:.2%}"
            if best.micro_f1 is None
            else f"micro-F1 {best.micro_f1:.2%}, macro-F1 {best.macro_f1:.2%}, subset accuracy "
            f"{best.accuracy:.2%}"
        )
    )
    out.print(f"run folder: [bold]{result.run_dir}[/bold]", soft_wrap=True)
    if result.stopped == "interrupted":
        again = "torchrun ... -m textlstm train" if launched_here else "textlstm train"
        out.print(f"continue with: {again} --resume {result.run_dir}", soft_wrap=True)
    split = "test" if "test" in result.splits else "validation"
    out.print(f"next: textlstm evaluate {result.run_dir} --split {split}")


def cross_validate(
    recipe: Path | None,
    resume: Path | None,
    overrides: list[str] | None,
    folds: int,
    out_dir: Path,
    data_dir: Path | None,
    device: str,
    events: Events,
    settings_: Options,
) -> None:
    from textlstm.cli.evaluate import show_folds
    from textlstm.errors import RecipeError
    from textlstm.recipe import load_recipe
    from textlstm.tuning.folds import train_folds

    if recipe is None or resume is not None:
        raise RecipeError("--folds: give a recipe file (a cross-validation is not resumed)")
    loaded = load_recipe(recipe, overrides)
    out.print(f"[bold]cross-validating[/bold] {loaded.name} from {recipe} on {folds} folds")

    def done(fold: int, run: Path) -> None:
        out.print(f"fold {fold} of {folds}: [bold]{run}[/bold]", soft_wrap=True)

    show_folds(train_folds(loaded, folds, out_dir, data_dir, device, events, settings_, done))
