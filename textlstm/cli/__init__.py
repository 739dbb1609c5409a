"""The ``textlstm`` command: one module per command, each a short shim over one library call
(``app`` holds what they share, ``progress`` what they draw while the library works)."""

from textlstm.cli import check, evaluate, predict, train, tune, vocab  # noqa: F401  (registers)
from textlstm.cli.app import app, main
from textlstm.cli.progress import TrainProgress, TuneTable

__all__ = ["TrainProgress", "TuneTable", "app", "main"]
