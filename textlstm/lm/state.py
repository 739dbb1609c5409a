"""A language model's resumable state: ``resume.safetensors`` in its ``.partial`` run folder.

Written every ``pretrain.checkpoint_minutes`` and after each epoch, atomically (a kill leaves the
previous state or the new one). It holds the model, the optimizer, the recurrent state carried
between windows, and as JSON metadata where the run stands: the epoch, the step within it, the
generator state the epoch's text order was drawn from, the loss and tokens so far, the history.
Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.errors import CheckpointError
from textlstm.files import atomic_path, check_file
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
    from safetensors.torch import save_file

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
    with atomic_path(folder / FILE, durable=True) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"format": FORMAT, "state": json.dumps(meta)},
        )


def load_state(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    path = folder / FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {FILE} here, so this pretraining cannot be resumed (a run keeps "
            "one after its first checkpoint)"
        )
    check_file(path, "resume checkpoint", CheckpointError)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
        if header.get("format") != FORMAT:
            raise ValueError("not a textlstm language-model resume file")
        meta = json.loads(header["state"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: not a readable resume checkpoint ({exc}); the file is damaged: pretrain again"
        ) from None
    return meta, tensors


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
