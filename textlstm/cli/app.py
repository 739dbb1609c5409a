"""The Typer app, the options the commands share, and how errors reach the terminal.

Heavy imports (torch, datasets) happen inside the commands so ``textlstm --help`` stays fast.
Every TextLSTMError becomes one red line per problem on stderr and exit code 2; a diverged
training exits with its own code (``errors.DIVERGED_EXIT``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from textlstm import settings
from textlstm import threads as _threads  # noqa: F401  # opens the load's first window now
from textlstm.errors import (
    DIVERGED_EXIT,
    PeerFailed,
    Terminated,
    TextLSTMError,
    TrainingDiverged,
    for_cli,
)

app = typer.Typer(
    help="LSTM text classification from TOML recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)


def _version(value: bool) -> None:
    """``--version``: this package's version and torch's, read without importing torch."""
    if value:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from textlstm import __version__

        try:
            torch = version("torch")
        except PackageNotFoundError:
            torch = "not installed"
        out.print(f"textlstm {__version__} (torch {torch}, Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """LSTM text classification from TOML recipes."""


err = Console(stderr=True, highlight=False)

# library parameters whose flag is not "--" + the name with dashes
FLAGS = {"overrides": "--set", "output": "-o"}

Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a recipe key, e.g. --set model.hidden_size=256 (repeatable)."
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Root of local dataset mirrors: <root>/<hub id> is used instead of the "
        f"hub (default: ${settings.DATA_DIR_ENV}).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help=f"CPU threads (default: ${settings.THREADS_ENV}, else one per core that other "
        "work leaves free, looked at again every few seconds while it runs).",
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto (as the run was trained: its train.precision), fp32, or bf16: "
        "bfloat16 autocast, about 2x faster on CPUs with avx512_bf16.",
    ),
]
Quantize = Annotated[
    str | None,
    typer.Option(
        "--quantize",
        help="int8: PyTorch dynamic int8 quantization of the LSTM and linear layers "
        "(CPU; see bench/README.md for its speed here).",
    ),
]
VocabDir = Annotated[
    Path | None,
    typer.Option(
        "--vocab-dir",
        help="Where `textlstm vocab` keeps vocabularies and training looks for them "
        f"(default: ${settings.VOCAB_DIR_ENV}, else {settings.VOCAB_DIR}).",
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Preprocessing cache (token ids, vocabularies) (default: "
        f"${settings.CACHE_ENV}, else ~/.cache/textlstm).",
    ),
]
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the preprocessing cache.")
]
BatchSize = Annotated[
    int | None,
    typer.Option(min=1, help="Texts per forward pass (default: 256; 32 for an ONNX export)."),
]
Engine = Annotated[
    str,
    typer.Option(
        help="torch (a run folder), onnxruntime (an ONNX export from `textlstm export`), or "
        "auto: by the folder."
    ),
]
TensorBoard = Annotated[
    Path | None,
    typer.Option(
        "--tensorboard",
        help="Also write the run's scalars as TensorBoard logs under DIR/<name>/<run> "
        "(view with: tensorboard --logdir DIR); needs the tensorboard extra.",
        metavar="DIR",
    ),
]
RecipeFile = Annotated[Path, typer.Argument(help="Recipe .toml file.")]


def options(vocab_dir: Path | None, cache_dir: Path | None, no_cache: bool) -> Any:
    """The preprocessing options; unset folders come from ``textlstm.settings``."""
    from textlstm.text.cache import Options

    return Options(
        vocab_dir=vocab_dir or settings.vocab_dir(),
        cache_dir=None if no_cache else cache_dir or settings.cache_dir(),
    )


def cli_text(text: str) -> str:
    """A library message with the flags of this command line in place of parameter names."""
    return for_cli(text, FLAGS)


def note(text: str) -> None:
    out.print(cli_text(text), soft_wrap=True, markup=False)


def other_rank() -> str:
    """ "rank N: " in a process that torchrun started as rank N > 0, whose messages would
    otherwise read like rank 0's; "" elsewhere."""
    launch = settings.launch()
    return f"rank {launch.rank}: " if launch.many and launch.rank else ""


def under_torchrun() -> bool:
    """Whether torchrun started this process as one of several; then SIGTERM (torchrun's way of
    ending the others when one fails) gets one line and leaves the run folder resumable, and
    only rank 0 prints anything but errors."""
    launch = settings.launch()
    if not launch.many:
        return False
    from textlstm.training import distributed

    distributed.check_launch()
    distributed.stop_on_sigterm()
    out.quiet = launch.rank != 0
    return True


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Input errors: one red line each and exit 2. Divergence: one line and its own code.
    Ctrl-C: one line and exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rich.markup import escape

        rank = other_rank()
        try:
            return command(*args, **kwargs)
        except TextLSTMError as exc:
            for line in exc.lines:
                err.print(
                    f"{rank}[red]error:[/red] {escape(cli_text(line))}",
                    soft_wrap=True,
                    markup=True,
                )
            raise typer.Exit(2) from None
        except PeerFailed:  # rank 0 printed why
            raise typer.Exit(2) from None
        except Terminated:
            err.print(f"{rank}[yellow]stopped by SIGTERM[/yellow]")
            raise typer.Exit(143) from None
        except TrainingDiverged as exc:
            err.print(f"{rank}[red]diverged:[/red] {escape(cli_text(str(exc)))}", soft_wrap=True)
            raise typer.Exit(DIVERGED_EXIT) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # e.g. `textlstm predict RUN in.txt | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None

    return wrapper


def main() -> None:
    """Usage errors (an unknown option, a value out of range) get one line too, not a box."""
    import textlstm.cli  # noqa: F401  (registers the commands)

    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except Exception as exc:  # Typer's vendored click exceptions have no public names
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed
            sys.exit(2)
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        err.print(
            f"[red]error:[/red] {exc.format_message()} (see: {_command(exc)} --help)",
            soft_wrap=True,
            markup=True,
        )
        sys.exit(2)
    _leave(code if isinstance(code, int) else 0)


def _leave(code: int) -> None:
    """Exit with ``code``. A process that torchrun started exits as soon as its output is
    flushed, skipping the interpreter's shutdown: its process group is closed by then, and a
    rank whose gloo objects were torn down in that shutdown aborted (SIGABRT) once in ten
    resumed runs on a busy machine, which made torchrun report a finished run as failed."""
    if settings.launch().many:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


def _command(exc: Exception) -> str:
    names: list[str] = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:  # the root's name may be "python -m ..."
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return " ".join(["textlstm", *names])
