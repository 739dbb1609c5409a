"""The ``textlstm`` command: one module per command, each a short shim over one library call
(``app`` holds what they share, ``progress`` what they draw while the library works)."""

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

__all__ = ["COMMANDS", "TrainProgress", "TuneTable", "app", "main"]
