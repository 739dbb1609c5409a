"""Training: the epoch loop (``loop``), what a run trains (``setup``), a run from recipe to run
folder (``trainer``), the state that resumes it (``state``), and what it reports (``events``).

Names are imported on first use, so ``textlstm.training.events`` loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textlstm.training.events import EpochResult, Events, TrainResult
    from textlstm.training.setup import Prepared, prepare
    from textlstm.training.trainer import resume, train, train_or_resume

_EXPORTS = {
    "EpochResult": "events",
    "Events": "events",
    "TrainResult": "events",
    "Prepared": "trainer",
    "prepare": "trainer",
    "resume": "trainer",
    "train_or_resume": "trainer",
    "train": "trainer",
}
__all__ = [
    "EpochResult",
    "Events",
    "Prepared",
    "TrainResult",
    "prepare",
    "resume",
    "train",
    "train_or_resume",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textlstm.training' has no attribute {name!r}")
    return getattr(import_module(f"textlstm.training.{_EXPORTS[name]}"), name)
