"""The ``textlstm`` command: one module per command, each a short shim over one library call
(``app`` holds what they share, ``progress`` what they draw while the library works)."""

import inspect
from importlib import import_module

from textlstm.cli.app import app, main
from textlstm.cli.progress import TrainProgress, TuneTable

COMMANDS = (
    "train",
    "pretrain",
    "check",
    "init",
    "vocab",
    "tune",
    "evaluate",
    "predict",
    "export",
    "serve",
    "explain",
    "report",
    "compare",
)  # as --help lists them
for _command in COMMANDS:
    import_module(f"textlstm.cli.{_command}")


def _flowed(doc: str) -> str:
    """A docstring as help text: each paragraph's lines joined into one, so a sentence never
    breaks where the source file wrapped it; the terminal wraps it to its own width."""
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


for _info in app.registered_commands:
    if _info.help is None and _info.callback is not None:
        _info.help = _flowed(inspect.getdoc(_info.callback) or "")

__all__ = ["COMMANDS", "TrainProgress", "TuneTable", "app", "main"]
