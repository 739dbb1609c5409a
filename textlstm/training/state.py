"""Resumable training state: one safetensors file per run, rewritten atomically after each epoch.

``resume.safetensors`` holds the model, the best weights so far and the optimizer's tensors, with
everything else (epoch, early-stopping state, history, scheduler, random generator states) as JSON
in the file's metadata. Nothing is pickled. It is written to a temporary file in the run folder,
fsynced, and renamed over the previous one, so a kill at any moment leaves either the previous
epoch's state or the new one, never a torn file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.training.lifecycle import load_resume, save_resume

FILE = "resume.safetensors"
FORMAT = "textlstm-resume"


@dataclass
class TrainState:
    """Everything the epoch loop needs to continue exactly where it stopped."""

    epoch: int  # the last finished epoch
    best_value: float
    best_loss: float
    best_epoch: int
    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]
    seconds: float  # training time spent so far, over every session of this run
    data_dir: str | None


def save_state(
    run_dir: Path,
    state: TrainState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None = None,
    average: torch.optim.swa_utils.AveragedModel | None = None,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if average is not None:  # train.ema_decay: the moving average and its count of updates
        tensors.update({f"average.{k}": v for k, v in average.state_dict().items()})
    tensors.update({f"best.{k}": v for k, v in (state.best_state or {}).items()})
    optim = optimizer.state_dict()
    tensors.update(optimizer_tensors(optim))
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "scaler": scaler_state(scaler),
        "epoch": state.epoch,
        "best_value": state.best_value,
        "best_loss": state.best_loss,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "seconds": state.seconds,
        "data_dir": state.data_dir,
        "param_groups": optim["param_groups"],
        "scheduler": scheduler.state_dict(),
        "rng_numpy": rng.bit_generator.state,
        "rng_python": random.getstate(),
    }
    save_resume(run_dir, FILE, FORMAT, tensors, meta)


def load_state(run_dir: Path) -> tuple[TrainState, dict[str, Any]]:
    """The saved state and the raw parts ``restore`` needs; one clear line when unreadable."""
    missing = "this run cannot be resumed (only runs that finished at least one epoch can)"
    meta, tensors = load_resume(run_dir, FILE, FORMAT, missing, "train again")
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    state = TrainState(
        meta["epoch"],
        meta["best_value"],
        meta["best_loss"],
        meta["best_epoch"],
        best or None,
        meta["history"],
        meta["seconds"],
        meta["data_dir"],
    )
    return state, {"tensors": tensors, **meta}


def restore(
    raw: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None = None,
    average: torch.optim.swa_utils.AveragedModel | None = None,
) -> None:
    tensors = raw["tensors"]
    if scaler is not None and raw.get("scaler"):
        scaler.load_state_dict(raw["scaler"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if average is not None:
        average.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("average.")})
    load_optimizer(optimizer, tensors, raw["param_groups"])
    scheduler.load_state_dict(raw["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    rng.bit_generator.state = raw["rng_numpy"]
    version, internal, gauss = raw["rng_python"]
    random.setstate((version, tuple(internal), gauss))


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any] | None:
    """fp16's loss scale and its growth counter, as JSON."""
    if scaler is None:
        return None
    return {k: float(v) if isinstance(v, float) else v for k, v in scaler.state_dict().items()}


def optimizer_tensors(optim: dict[str, Any]) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter tensors as ``optimizer.<index>.<name>``; its param_groups
    go into the JSON metadata."""
    tensors = {}
    for index, values in optim["state"].items():
        tensors.update({f"optimizer.{index}.{key}": value for key, value in values.items()})
    return tensors


def load_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    param_groups: list[dict[str, Any]],
) -> None:
    """The inverse of ``optimizer_tensors`` with the saved param_groups (JSON lists the betas)."""
    states: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            states.setdefault(int(index), {})[name] = value
    groups = [
        {**group, **({"betas": tuple(group["betas"])} if "betas" in group else {})}
        for group in param_groups
    ]
    optimizer.load_state_dict({"state": states, "param_groups": groups})
