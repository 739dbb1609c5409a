"""Pretraining: an LSTM language model on the task's own text (``pretrainer``), the streams it reads
(``streams``), what it reads (``corpus``), the model (``model``) and what it reports (``events``).

Names are imported on first use, so ``textlstm.lm.events`` loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textlstm.lm.events import LMEpoch, PretrainEvents, PretrainResult
    from textlstm.lm.pretrainer import pretrain, pretrain_or_resume, resume

# each name and the module it lives in, read on first use
_EXPORTS = dict.fromkeys(("LMEpoch", "PretrainEvents", "PretrainResult"), "events") | dict.fromkeys(
    ("pretrain", "pretrain_or_resume", "resume"), "pretrainer"
)
__all__ = ["LMEpoch", "PretrainEvents", "PretrainResult"]
__all__ += ["pretrain", "pretrain_or_resume", "resume"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'textlstm.lm' has no attribute {name!r}")
    return getattr(import_module(f"textlstm.lm.{_EXPORTS[name]}"), name)
