"""One run folder's life, the same for `train` and `pretrain`.

A run is reserved as ``<out>/<name>/<stamp>.partial`` holding what a resume reads back (the
recipe, the vocabulary); each checkpoint writes its resume file whole or not at all; a resume
reopens the folder (an interrupted run goes back to ``.partial``); a finished run gets its final
name. Whatever stops a run part-way goes through ``guarded``: the folder is kept when it holds a
resume file and discarded otherwise, and the one line said names what was kept and the command
that continues it. A write that the file system refuses (a full disk, a read-only or vanished
folder) is such a stop too: one line naming the path and the cause, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.errors import CheckpointError, RecipeError, TrainingDiverged, WriteFailed, param
from textlstm.files import atomic_path, check_file, refusal, refused, write_text
from textlstm.recipe import Recipe, load_recipe
from textlstm.run import checkpoint
from textlstm.runtime import check_train_precision, seed_everything
from textlstm.training import distributed
from textlstm.training.distributed import World


def chosen(
    recipe: str | Path | None, resume: str | Path | None, overrides: list[str] | None, command: str
) -> Recipe | Path:
    """What `train` or `pretrain` was asked for: a recipe file (with its overrides) to start
    from, or a run folder to resume; exactly one of the two."""
    if (recipe is None) == (resume is None):
        raise RecipeError(
            f"{command}: give a recipe file, or {param('resume', 'RUN_FOLDER')} (not both)"
        )
    if resume is not None:
        if overrides:
            raise RecipeError(
                f"{param('overrides')}: a resumed run keeps the recipe it started with"
            )
        return Path(resume)
    assert recipe is not None
    return load_recipe(recipe, overrides)


def opening(recipe: Recipe, target: torch.device) -> np.random.Generator:
    """What every run does first on every rank, new or resumed: the precision checked against
    the device, every generator seeded."""
    check_train_precision(recipe.train.precision, target)
    return seed_everything(recipe.seed)


def reserve(out_dir: str | Path, name: str, write: Callable[[Path], None]) -> Path:
    """A new ``.partial`` run folder with ``write``'s files in it (what a resume reads back);
    nothing is left behind when writing them fails."""
    folder = checkpoint.reserve_run_dir(out_dir, name)
    try:
        write(folder)
    except BaseException as exc:
        checkpoint.discard(folder)
        if refused(exc):
            raise written(exc, folder, "nothing was kept") from None
        raise
    return folder


def reopen(folder: Path, history: list[dict[str, Any]]) -> Path:
    """The folder made ``.partial`` again, its metrics log cut back to the saved epochs (a kill
    may have logged an epoch whose checkpoint never landed)."""
    folder = checkpoint.reopen(folder)
    write_text(folder / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    return folder


def saved_recipe(folder: Path) -> Recipe:
    """The recipe a run folder was started with; a damaged one is a checkpoint problem."""
    try:
        return load_recipe(folder / "recipe.toml")
    except RecipeError as exc:
        raise CheckpointError(*exc.lines) from None


def save_resume(
    folder: Path, file: str, fmt: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """The resume file: tensors in safetensors, the rest as JSON in its header; durable, and
    written under a temporary name, so a kill or a full disk leaves the previous one intact."""
    from safetensors.torch import save_file

    with atomic_path(folder / file, durable=True) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"format": fmt, "state": json.dumps(meta)},
        )


def load_resume(
    folder: Path, file: str, fmt: str, missing: str, again: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The resume file's JSON and tensors; one line when it is absent (``missing`` says why
    there is none) or unreadable (``again`` is the command that starts over)."""
    from safetensors import SafetensorError, safe_open

    path = folder / file
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; a resume checkpoint is a file")
    if path.exists():
        check_file(path, "resume checkpoint", CheckpointError)
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {file} here, so {missing}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            # cloned: a tensor read from the file sits at whatever alignment the header length
            # gives it, and vector kernels then round differently from the aligned original
            tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
        if header.get("format") != fmt:
            raise ValueError(f"not a {fmt} file")
        meta = json.loads(header["state"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: not a readable resume checkpoint ({exc}); the file is damaged: {again}"
        ) from None
    return meta, tensors


@dataclass
class Guard:
    """What ``guarded`` needs to know of a run in progress."""

    folder: Path
    world: World
    resume_file: str  # its presence makes the folder resumable
    command: str  # "train" or "pretrain"
    progress: Callable[[], str]  # what a resume would continue from, e.g. "epoch 3"
    started: Callable[[], bool]  # whether Ctrl-C has anything to keep


def guarded(guard: Guard, work: Callable[[], str]) -> str:
    """``work``'s result (how the run stopped), or "interrupted" after Ctrl-C once something is
    worth keeping. Any other stop leaves the folder resumable if it holds a resume file, else
    removes it, and says so in one line where the cause is not a bug: a divergence, a lost
    process of a distributed job, a write the file system refused."""
    try:
        return work()
    except KeyboardInterrupt:
        if not guard.started():
            _discard_unless_resumable(guard)
            raise
        return "interrupted"
    except TrainingDiverged as exc:
        kept = _discard_unless_resumable(guard)
        where = f"; {guard.folder} keeps {guard.progress()} and can be resumed" if kept else ""
        folder = guard.folder if kept else None
        raise TrainingDiverged(f"{exc}{where}", folder, exc.reason) from None
    except BaseException as exc:
        kept = _discard_unless_resumable(guard)
        if refused(exc):
            raise written(exc, guard.folder, _kept(guard, kept)) from None
        if not distributed.failed_peer(guard.world, exc):
            raise
        raise distributed.lost(guard.world, exc, _kept(guard, kept)) from None


@contextlib.contextmanager
def completing(guard: Guard) -> Iterator[None]:
    """Around the writing of a finished run (weights, meta.json, plots): a write the file
    system refuses is one line, and the folder keeps its resume file, so ``--resume`` then
    writes the finished run again."""
    try:
        yield
    except BaseException as exc:
        if not refused(exc):
            raise
        raise written(exc, guard.folder, _kept(guard, _discard_unless_resumable(guard))) from None


def _kept(guard: Guard, kept: bool) -> str:
    if not kept:
        return f"nothing had been checkpointed, so nothing was kept: {guard.command} again"
    command = (
        distributed.resume_command(guard.world, guard.folder, guard.command)
        if guard.world.many
        else f"textlstm {guard.command} --resume {guard.folder}"
    )
    return f"{guard.folder} keeps {guard.progress()}: continue with `{command}`"


def _discard_unless_resumable(guard: Guard) -> bool:
    """Whether the folder stays (it holds a resume file); rank 0 alone owns it, and another
    rank takes it as kept once a checkpoint is due."""
    if not guard.world.main:
        return guard.started()
    if (guard.folder / guard.resume_file).exists():
        return True
    checkpoint.discard(guard.folder)
    return False


def written(exc: BaseException, folder: Path, kept: str) -> WriteFailed:
    """One line: the path the write was for, the cause, and what was kept."""
    path = exc.path if isinstance(exc, WriteFailed) else getattr(exc, "filename", None)
    return WriteFailed(path or folder, refusal(exc) or "input/output error", kept)
