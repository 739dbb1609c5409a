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
    VocabDir,
    app,
    guarded,
    options,
    other_rank,
    out,
    under_torchrun,
)
from textlstm.cli.progress import TrainProgress, logged

if TYPE_CHECKING:
    from textlstm.recipe import Recipe
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
) -> None:
    """Train a model from a recipe; writes a run folder under --out/<recipe name>/."""
    from textlstm.errors import TextLSTMError
    from textlstm.recipe import load_recipe
    from textlstm.training import resume as resume_run
    from textlstm.training import train as train_model

    if (recipe is None) == (resume is None):
        raise TextLSTMError("train: give a recipe file, or --resume RUN_FOLDER (not both)")
    if resume is not None and overrides:
        raise TextLSTMError("--set: a resumed run keeps the recipe it started with")
    settings_ = options(vocab_dir, cache_dir, no_cache)
    if other_rank():  # torchrun's ranks 1..N-1: rank 0 draws the progress and says the result
        quiet(recipe, overrides, resume, out_dir, data_dir, device, settings_)
        return
    launched_here = under_torchrun()
    with TrainProgress() as progress, logged(progress, tensorboard) as events:
        if resume is not None:
            out.print(f"[bold]resuming[/bold] {resume}")
            result = resume_run(resume, data_dir, device, events, settings_)
        else:
            assert recipe is not None
            loaded = load_recipe(recipe, overrides)
            out.print(f"[bold]training[/bold] {loaded.name} from {recipe}")
            if folds:
                return cross_validate(loaded, folds, out_dir, data_dir, device, events, settings_)
            result = train_model(loaded, out_dir, data_dir, device, events, settings_)
    show_result(result, launched_here)


def show_result(result: TrainResult, launched_here: bool) -> None:
    best = result.epochs[result.best_epoch - 1]
    out.print(
        f"[green]done[/green] in {result.seconds:.0f}s ({result.stopped.replace('_', ' ')}); "
        f"best epoch {result.best_epoch}: validation accuracy {best.accuracy:.2%}, "
        f"macro-F1 {best.macro_f1:.2%}"
    )
    out.print(f"run folder: [bold]{result.run_dir}[/bold]", soft_wrap=True)
    if result.stopped == "interrupted":
        again = "torchrun ... -m textlstm train" if launched_here else "textlstm train"
        out.print(f"continue with: {again} --resume {result.run_dir}", soft_wrap=True)
    split = "test" if "test" in result.splits else "validation"
    out.print(f"next: textlstm evaluate {result.run_dir} --split {split}")


def cross_validate(
    recipe: Recipe,
    folds: int,
    out_dir: Path,
    data_dir: Path | None,
    device: str,
    events: Events,
    settings_: Options,
) -> None:
    from textlstm.cli.evaluate import show_folds
    from textlstm.tuning.folds import train_folds

    def done(fold: int, run: Path) -> None:
        out.print(f"fold {fold} of {folds}: [bold]{run}[/bold]", soft_wrap=True)

    show_folds(train_folds(recipe, folds, out_dir, data_dir, device, events, settings_, done))


def quiet(
    recipe: Path | None,
    overrides: list[str] | None,
    resume: Path | None,
    out_dir: Path,
    data_dir: Path | None,
    device: str,
    settings_: Options,
) -> None:
    """A rank other than 0: the same training, without output."""
    from textlstm.recipe import load_recipe
    from textlstm.training import resume as resume_run
    from textlstm.training import train as train_model

    under_torchrun()
    if resume is not None:
        resume_run(resume, data_dir, device, None, settings_)
    else:
        assert recipe is not None
        train_model(load_recipe(recipe, overrides), out_dir, data_dir, device, None, settings_)
