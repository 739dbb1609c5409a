"""The ``textlstm`` command."""
from textlstm.cli.app import TrainProgress, TuneTable, app, main

__all__ = ["TrainProgress", "TuneTable", "app", "main"]
