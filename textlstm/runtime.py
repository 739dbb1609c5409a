"""Seed, device and threads: the process-wide settings, chosen in one place."""
from __future__ import annotations

import random

import numpy as np
import torch

from textlstm.errors import TextLSTMError

DEVICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and Python; return the NumPy generator that the data order is drawn from."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise TextLSTMError(f"--device {name}: unknown device; use one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise TextLSTMError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
