"""Folder defaults and environment variables: read here and nowhere else.

The CLI's options default to None and the library fills them in from here, so a variable means the
same to ``textlstm ...`` and to ``import textlstm``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "TEXTLSTM_DATA_DIR"  # root of local dataset mirrors: <root>/<hub id>
CACHE_ENV = "TEXTLSTM_CACHE"  # the preprocessing cache
VOCAB_DIR_ENV = "TEXTLSTM_VOCAB_DIR"  # where `textlstm vocab` keeps vocabularies
RUNS_DIR = Path("runs")  # parent of run folders, relative to the working folder
VOCAB_DIR = Path("vocab")


def data_root(data_dir: str | Path | None = None) -> Path | None:
    """The mirror root: ``data_dir`` when given, else ``$TEXTLSTM_DATA_DIR``, else none."""
    root = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(root) if root else None


def cache_dir() -> Path:
    """``$TEXTLSTM_CACHE``, else ``$XDG_CACHE_HOME/textlstm``, else ``~/.cache/textlstm``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "textlstm"


def vocab_dir() -> Path:
    """``$TEXTLSTM_VOCAB_DIR``, else ``vocab`` in the working folder."""
    return Path(os.environ.get(VOCAB_DIR_ENV) or VOCAB_DIR)


@dataclass(frozen=True)
class Launch:
    """What a launcher (torchrun) told this process: its rank, of how many, on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    missing: tuple[str, ...] = ()  # rendezvous variables a launcher sets that are not set

    @property
    def many(self) -> bool:
        return self.size > 1


def launch() -> Launch:
    """torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1") or 1)
    return Launch(
        int(env.get("RANK", "0") or 0),
        size,
        int(env.get("LOCAL_RANK", "0") or 0),
        int(env.get("LOCAL_WORLD_SIZE", size) or size),
        tuple(v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in env),
    )


THREADS_ENV = "TEXTLSTM_THREADS"  # CPU threads for training, evaluation and prediction
FOLLOW_ENV = "TEXTLSTM_THREADS_FOLLOW"  # seconds between looks at the load; 0 = first look only


def threads_env() -> tuple[str, str] | None:
    """A thread count set in the environment, unchecked, and the variable that set it:
    ``$TEXTLSTM_THREADS`` (unless "auto"), else ``$OMP_NUM_THREADS``; None when neither is."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value and not (name == THREADS_ENV and value == "auto"):
            return value, name
    return None


def threads_follow_seconds(default: float) -> float:
    """``$TEXTLSTM_THREADS_FOLLOW`` (for benchmarks), else ``default``."""
    value = os.environ.get(FOLLOW_ENV, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        return default
