"""``textlstm tune``: the recipe's search space explored, the study kept and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textlstm import settings
from textlstm.cli.app import (
    CacheDir,
    DataDir,
    Device,
    NoCache,
    Overrides,
    VocabDir,
    app,
    guarded,
    options,
    out,
)
from textlstm.cli.progress import TuneTable

TuneRecipe = Annotated[Path, typer.Argument(help="Recipe .toml file with a tune section.")]
TuneOut = Annotated[Path, typer.Option("--out", help="Parent of <name>-tune/.")]
Trials = Annotated[
    int | None, typer.Option(min=1, help="Finished trials wanted (default: tune.trials).")
]
Timeout = Annotated[
    float | None, typer.Option(help="Seconds for this call (default: tune.timeout).")
]
NoPrune = Annotated[bool, typer.Option("--no-prune", help="Run every trial to the end.")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes on this machine.")]
Storage = Annotated[
    str | None,
    typer.Option(
        help="Database URL of a study shared by several machines, e.g. postgresql://user:pw@host/db."
    ),
]
Keep = Annotated[
    int | None,
    typer.Option(
        min=1, help="Keep only the best N trial run folders (default: tune.keep, else all)."
    ),
]
Retrain = Annotated[
    bool, typer.Option("--retrain", help="Then train the best configuration as tune.retrain says.")
]


@app.command()
@guarded
def tune(
    recipe: TuneRecipe,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    out_dir: TuneOut = settings.RUNS_DIR,
    trials: Trials = None,
    timeout: Timeout = None,
    no_prune: NoPrune = False,
    jobs: Jobs = 1,
    storage: Storage = None,
    keep: Keep = None,
    retrain: Retrain = False,
    vocab_dir: VocabDir = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
) -> None:
    """Random (or TPE) search over the recipe's tune.space; resumes the same study if run again."""
    from textlstm.recipe import load_recipe
    from textlstm.tuning import tune as run_tune

    loaded = load_recipe(recipe, overrides)
    keys = list(loaded.tune.space) if loaded.tune else []
    metric = loaded.tune.metric if loaded.tune else "accuracy"
    with TuneTable(keys, metric, live=out.is_terminal) as events:
        settings_ = options(vocab_dir, cache_dir, no_cache)
        result = run_tune(
            loaded, out_dir, trials, timeout, not no_prune, data_dir, device, events, settings_,
            jobs=jobs, storage=storage, keep=keep, retrain=retrain,
        )  # fmt: skip
    if result.interrupted:
        raise typer.Exit(130)
    if result.retrained is not None:
        out.print(
            f"[green]retrained[/green] in {result.retrained.seconds:.0f}s: "
            f"{result.retrained.run_dir}",
            soft_wrap=True,
        )
        out.print(f"next: textlstm evaluate {result.retrained.run_dir}", soft_wrap=True)
