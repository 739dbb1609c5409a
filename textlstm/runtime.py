"""Seed, device and precision: the process-wide settings, chosen in one place (the CPU threads
are chosen in ``threads``, which imports no torch before it sets them)."""

from __future__ import annotations

import contextlib
import functools
import random
from typing import Any

import numpy as np
import torch

from textlstm.errors import TextLSTMError, param

DEVICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and Python; return the NumPy generator that the data order is drawn from."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise TextLSTMError(
            f"{param('device', name)}: unknown device; use one of {', '.join(DEVICES)}"
        )
    if name == "cuda" and not torch.cuda.is_available():
        raise TextLSTMError(
            f"{param('device', 'cuda')}: no CUDA GPU is available here; use "
            f"{param('device', 'cpu')} or auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context a model runs in: bfloat16 autocast for ``bf16`` (matrix products and the
    recurrent kernels in bf16, weights and the loss in fp32), float16 for ``fp16`` (a GPU's),
    nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def check_train_precision(precision: str, device: torch.device) -> None:
    """``fp16`` trains on a CUDA GPU only: one line, before anything is read or written."""
    if precision == "fp16" and device.type != "cuda":
        raise TextLSTMError(
            f'train.precision = "fp16" needs a CUDA GPU (CPUs have no float16 LSTM kernels) and '
            f'this run is on {device}: use "bf16" (CPUs with avx512_bf16/AMX) or "fp32", e.g. '
            f"{param('overrides', 'train.precision=bf16')}"
        )


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """float16's narrow range loses small gradients unless the loss is scaled up first (and the
    gradients down before the step); bfloat16 and fp32 need no scaler."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware here (CPU: avx512_bf16 or AMX; GPU: Ampere or later).
    Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_support(device: torch.device) -> str:
    """``native`` (bf16 units: avx512_bf16/AMX, or a GPU from Ampere on), ``emulated`` (runs,
    slower than fp32) or ``none``: a CPU with neither AVX-512 nor bf16, such as an AVX2-only one,
    has no bfloat16 kernel for the fused LSTM and GRU at all."""
    if native_bf16(device):
        return "native"
    if device.type == "cuda":
        return "emulated"
    return "emulated" if _cpu_bf16_recurrent_runs() else "none"


@functools.cache
def _cpu_bf16_recurrent_runs() -> bool:
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the probe draws no seeded numbers
        try:
            for cell in (torch.nn.LSTM, torch.nn.GRU):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    cell(8, 8)(torch.zeros(2, 1, 8))
        except RuntimeError:  # oneDNN: "could not create a primitive descriptor"
            return False
    return True


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    clip: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Backward pass, gradient clipping (``clip`` > 0) and optimizer step. With fp16's gradient
    scaler the loss is scaled up, the gradients unscaled before clipping, and a step whose
    gradients overflowed is skipped (the scale then shrinks)."""
    if scaler is None:
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
