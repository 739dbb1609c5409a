"""Hyperparameter search on Optuna: the entry point (``search.tune``), the study and a trial
(``study``), the worker processes that share it (``workers``), what it leaves (``results``) and
what it reports (``events``).

Names are imported on first use, so ``textlstm.tuning.events`` loads without torch or Optuna.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textlstm.tuning.events import TrialSummary, TuneEvents, TuneResult
    from textlstm.tuning.search import tune

_EXPORTS = {
    "TrialSummary": "events",
    "TuneEvents": "events",
    "TuneResult": "events",
    "tune": "search",
}
__all__ = ["TrialSummary", "TuneEvents", "TuneResult", "tune"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textlstm.tuning' has no attribute {name!r}")
    return getattr(import_module(f"textlstm.tuning.{_EXPORTS[name]}"), name)
