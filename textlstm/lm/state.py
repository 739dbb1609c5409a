"""A language model's resumable state: ``resume.safetensors`` in its ``.partial`` run folder.

Written every ``pretrain.checkpoint_minutes`` and after each epoch, atomically (a kill leaves the
previous state or the new one). It holds the model, the optimizer, the recurrent state carried
between windows, and as JSON metadata where the run stands: the epoch, the step within it, the
generator state the epoch's text order was drawn from, the loss and tokens so far, the history.
Nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.training.lifecycle import load_resume, save_resume
from textlstm.training.state import load_optimizer, optimizer_tensors

FILE = "resume.safetensors"
FORMAT = "textlstm-lm-resume"


@dataclass
class Position:
    """Where a pretraining run stands."""

    epoch: int = 1  # the epoch in progress
    step: int = 0  # steps done in it
    order_state: dict[str, Any] = field(default_factory=dict)  # rng state the order came from
    loss: float = 0.0  # summed over the epoch's steps so far
    tokens: int = 0  # in the epoch so far
    seconds: float = 0.0  # in the epoch so far
    states: list[Any] = field(default_factory=list)  # per direction: None or per-layer tensors


def _flatten(states: list[Any]) -> dict[str, torch.Tensor]:
    tensors = {}
    for d, state in enumerate(states):
        for layer, part in enumerate(state or []):
            parts = part if isinstance(part, tuple) else (part,)
            for k, tensor in enumerate(parts):
                tensors[f"state.{d}.{layer}.{k}"] = tensor
    return tensors


def _unflatten(tensors: dict[str, torch.Tensor], directions: int) -> list[Any]:
    states: list[Any] = []
    for d in range(directions):
        layers: dict[int, dict[int, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            if key.startswith(f"state.{d}."):
                _, _, layer, k = key.split(".")
                layers.setdefault(int(layer), {})[int(k)] = tensor
        states.append(
            [
                tuple(parts[k] for k in sorted(parts)) if len(parts) > 1 else parts[0]
                for _, parts in sorted(layers.items())
            ]
            or None
        )
    return states


def save_state(
    folder: Path,
    position: Position,
    run: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    tensors.update(optimizer_tensors(optim))
    tensors.update(_flatten(position.states))
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "position": {k: v for k, v in position.__dict__.items() if k != "states"},
        "run": run,
        "param_groups": optim["param_groups"],
    }
    save_resume(folder, FILE, FORMAT, tensors, meta)


def load_state(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    missing = "this pretraining cannot be resumed (a run keeps one after its first checkpoint)"
    return load_resume(folder, FILE, FORMAT, missing, "pretrain again")


def restore(
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    directions: int,
) -> Position:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer(optimizer, tensors, meta["param_groups"])
    torch.set_rng_state(tensors["rng.torch"])
    position = Position(**meta["position"])
    position.states = _unflatten(tensors, directions)
    return position


def order_rng(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng
