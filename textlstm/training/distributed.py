"""Several processes training one model, on PyTorch's distributed engine.

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous; ``join`` opens the process group from them (gloo on CPUs, NCCL on GPUs), unless the
caller opened one already. The model trains wrapped in ``DistributedDataParallel``, which
all-reduces the gradients. Nothing here exchanges gradients or starts processes itself.

A recipe means the same on one process or several: ``train.batch_size`` is the batch of one
optimizer step, and each rank computes its share of every batch (``World.share``), so the number
of steps, the learning-rate schedule and the gradient of each step are those of a single process.
More processes make each step faster; they do not change what a step is. Only the tensors of
our own collectives travel between ranks, never pickled objects.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from textlstm import settings
from textlstm.errors import PeerFailed, Terminated, TextLSTMError
from textlstm.runtime import pick_device

T = TypeVar("T")
TIMEOUT = datetime.timedelta(minutes=30)  # rank 0 may preprocess a large corpus while others wait


class RankLost(TextLSTMError):
    """A collective failed: another process of the job ended (killed, crashed, or stopped by
    torchrun after one of them did)."""


class Share(NamedTuple):
    """This rank's rows of a batch, their loss weight, and how many of them are real."""

    rows: np.ndarray
    weight: float
    real: int


@dataclass(frozen=True)
class World:
    """Which process this is, of how many. ``World()`` is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""
    owned: bool = False  # join() opened the process group, so leave() closes it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1

    def share(self, rows: np.ndarray) -> Share:
        """Rows ``rank, rank + size, ...`` of a batch. A training batch is sorted by length, so
        every share holds texts of about the same lengths and no rank waits long for the others.
        The weight ``size * len(share) / len(batch)`` makes the mean of the ranks' gradients (what
        DDP's all-reduce computes) the gradient of the whole batch. A rank left without rows (a
        batch smaller than the world) computes the first row with weight 0."""
        if not self.many:
            return Share(rows, 1.0, len(rows))
        part = rows[self.rank :: self.size]
        if len(part) == 0:
            return Share(rows[:1], 0.0, 0)
        return Share(part, self.size * len(part) / len(rows), len(part))

    def rows(self, total: int) -> np.ndarray:
        """This rank's rows of an evaluation set of ``total`` rows."""
        return np.arange(self.rank, total, self.size)


SINGLE = World()


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return settings.launch().many


def launched_rank() -> int:
    return settings.launch().rank


def join(device: str = "auto") -> tuple[World, torch.device]:
    """This process's place in the job, and the device it trains on (``cuda:<local rank>`` on a
    GPU machine). A single process when nothing launched several."""
    import torch.distributed as dist

    if not (dist.is_available() and (dist.is_initialized() or launched())):
        return SINGLE, pick_device(device)
    target = pick_device(device)
    local = settings.launch().local_rank
    if target.type == "cuda":
        target = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(target)
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=_device_id(target))
    world = World(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), owned)
    if world.many and target.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        local_size = settings.launch().local_size if launched() else world.size
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))  # no oversubscription
    return world, target


def _device_id(target: torch.device) -> torch.device | None:
    return target if target.type == "cuda" else None


def leave(world: World) -> None:
    import torch.distributed as dist

    if world.owned and dist.is_initialized():
        dist.destroy_process_group()


KEPT = "the run folder, if any, is as rank 0 left it"


def together(device: str, work: Callable[[World, torch.device], T]) -> T:
    """``work(world, target)`` on every process of the job (or on this one alone), in one
    process group that this call opens and closes. A rank that finishes waits for the others at
    a barrier before closing: a rank that tore its connections down while rank 0 was still
    writing the run folder could abort in gloo's teardown. A lost peer becomes one line."""
    world, target = join(device)
    try:
        result = work(world, target)
        if world.many:
            import torch.distributed as dist

            dist.barrier()  # inside the try: a peer lost here is reported like any other
        return result
    except BaseException as exc:
        if not failed_peer(world, exc):
            raise
        raise lost(world, exc, KEPT) from None
    finally:
        leave(world)


def wrap(model: nn.Module, world: World, target: torch.device) -> nn.Module | None:
    """``model`` in DistributedDataParallel, or None for a single process. Buffers are not
    broadcast at each step: the model's only buffers are the n-gram model's, fitted before
    training and the same on every rank (DDP syncs them once, at the start)."""
    if not world.many:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [target.index] if target.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def all_sum(world: World, values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks (float64)."""
    if not world.many:
        return list(values)
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=_collective(world, device))
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_rows(world: World, local: np.ndarray, total: int, device: torch.device) -> np.ndarray:
    """The full (total, ...) array from each rank's rows ``World.rows(total)``, in order, on
    every rank."""
    if not world.many:
        return local
    import torch.distributed as dist

    where = _collective(world, device)
    longest = -(-total // world.size)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=torch.float32, device=where)
    padded[: len(local)] = torch.from_numpy(np.ascontiguousarray(local, dtype=np.float32))
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    out = np.zeros((total, *local.shape[1:]), dtype=np.float32)
    for rank, part in enumerate(parts):
        rows = np.arange(rank, total, world.size)
        out[rows] = part[: len(rows)].cpu().numpy()
    return out


def broadcast_text(world: World, text: str, device: torch.device) -> str:
    """Rank 0's ``text`` on every rank (a run folder's path, say)."""
    if not world.many:
        return text
    import torch.distributed as dist

    where = _collective(world, device)
    data = text.encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.int64, device=where)
    dist.broadcast(size, 0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=where)
    if world.main:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, 0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


def main_first(world: World, step: Callable[[], T], device: torch.device) -> T:
    """``step`` on rank 0, then on the others: rank 0 fills the preprocessing caches (vocabulary,
    token ids) that the others then read, so the work is done once. When it fails on rank 0 the
    others raise ``PeerFailed`` instead of waiting for it."""
    if not world.many:
        return step()
    failed = 0.0
    result: T | None = None
    if world.main:
        try:
            result = step()
        except BaseException:
            failed = 1.0
            all_sum(world, [failed], device)
            raise
    if all_sum(world, [failed], device)[0]:
        raise PeerFailed("rank 0 stopped")
    return result if world.main else step()  # type: ignore[return-value]


def dropout_seed(world: World, rng: np.random.Generator) -> None:
    """Each rank's own dropout masks for the next epoch, drawn from the shared data-order
    generator, so a resumed run draws them again as the uninterrupted one did."""
    if world.many:
        seed = int(rng.integers(2**62))
        torch.manual_seed(seed + world.rank)


def lost(world: World, exc: BaseException, kept: str) -> RankLost:
    """The one line for a rank whose job lost one of its processes."""
    where = f"rank {world.rank} of {world.size}"
    if isinstance(exc, Terminated):
        return RankLost(
            f"{where}: stopped by SIGTERM (torchrun stops every process of a job when one of "
            f"them fails; its report follows); {kept}"
        )
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0].split("] ", 1)[-1].split(". ")[0][:120] if lines else type(exc).__name__
    return RankLost(f"{where}: lost contact with another process of this run ({reason}); {kept}")


def _collective(world: World, device: torch.device) -> torch.device:
    """NCCL exchanges GPU tensors; gloo CPU ones."""
    return device if world.backend == "nccl" else torch.device("cpu")


def check_launch() -> None:
    """torchrun sets every variable of the rendezvous; a hand-set WORLD_SIZE without them is a
    mistake worth one line rather than a hang."""
    launch = settings.launch()
    if launch.many and launch.missing:
        raise TextLSTMError(
            f"WORLD_SIZE={launch.size} but {', '.join(launch.missing)} not set: "
            "start several processes with torchrun (see README.md, Training on several "
            "processes), or unset WORLD_SIZE"
        )


def stop_on_sigterm() -> None:
    """SIGTERM raises ``Terminated`` (in the main thread), so a rank that torchrun stops says
    one line and leaves its run folder resumable instead of vanishing mid-write. A second
    SIGTERM while it stops is ignored."""
    import signal

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, handler)


def from_main(world: World, step: Callable[[], str], device: torch.device) -> str:
    """``step`` run on rank 0 once every rank got here; its text on every rank. When it fails
    on rank 0 the others raise ``PeerFailed`` instead of waiting for it."""
    if not world.many:
        return step()
    all_sum(world, [0.0], device)  # every rank is here: nothing still reads what step changes
    text, failed = "", 0.0
    if world.main:
        try:
            text = step()
        except BaseException:
            all_sum(world, [1.0], device)
            raise
    if all_sum(world, [failed], device)[0]:
        raise PeerFailed("rank 0 stopped")
    return broadcast_text(world, text, device)


def resume_command(world: World, folder: object, command: str = "train") -> str:
    per_node = settings.launch().local_size if launched() else world.size
    nodes = "" if per_node == world.size else f" --nnodes {world.size // per_node} ..."
    return f"torchrun --nproc-per-node {per_node}{nodes} -m textlstm {command} --resume {folder}"


def failed_peer(world: World, exc: BaseException) -> bool:
    """Whether ``exc`` says another rank has gone: what a collective raises then (gloo raises a
    bare RuntimeError naming itself), or SIGTERM from torchrun."""
    import signal

    import torch.distributed as dist

    text = str(exc)
    found = isinstance(exc, (dist.DistError, Terminated)) or (
        world.many
        and isinstance(exc, RuntimeError)
        and any(mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed"))
    )
    if found and launched():  # torchrun's SIGTERM would only cut the one line short now
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return found
