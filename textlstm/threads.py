"""How many threads the CPU work runs on, chosen from the cores this process may use and from
what else keeps them busy, and followed while a long job runs.

Each time step of a fused LSTM ends at a barrier where every thread waits for the slowest. On a
machine where other work holds a core, one thread per core leaves a thread queued behind that
work at each barrier, and the whole step waits for it: beside one busy process a 2-thread
training ran at 0.31x its speed alone, and at 0.65x on one thread (bench/README.md,
``contention.py``). So the policy is:

- the cores: those of ``os.sched_getaffinity``, cut to the container's CPU quota (cgroup v2
  ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded down: a thread over the quota is throttled;
- the load: how many of those cores other processes kept busy, from ``/proc/stat`` minus this
  process's own CPU time, sampled over the time since the last look;
- threads = cores minus the busy ones, at least one; a core counts as busy when other work holds
  more than half of it, and free again when it holds less than a fifth (so a load near the line
  does not switch the count at every look);
- while a training, a pretraining or a long prediction runs, the load is looked at again every
  ``FOLLOW_SECONDS``: a second training started beside this one is seen within seconds, and both
  settle at one thread each, which together outrun two trainings of two threads each.

Inside ``two_lanes`` (the epochs and the inference of a bidirectional model), the threads are
split into two lanes that run the model's two directions side by side
(``textlstm.model.directions``): the calling thread keeps half the count, a worker thread the
other half, and neither waits at the other's barriers. Having no barrier to share, two lanes
of one thread each also run where the load left one thread: beside other work they slow down
as it takes its share of the cores, not 3x as a barrier-bound step does.

A user who sets the count (``--threads N``, ``TEXTLSTM_THREADS``, or ``OMP_NUM_THREADS``) gets
exactly that count and no following. Floating-point sums can differ in their last bits with the
number of threads, so a run that must repeat bit for bit on a shared machine sets it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textlstm import settings
from textlstm.errors import TextLSTMError, param

FOLLOW_SECONDS = 2.0  # how often a long job looks at the load again
FIRST_LOOK_SECONDS = 0.25  # the shortest window the first choice is made over
EARLY_SECONDS = 10.0  # the longest: an older window would average load long gone
BUSY_ABOVE = 0.5  # share of a core other work must hold for the core to count as busy
FREE_BELOW = 0.2  # ... and below which a busy core counts as free again


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU quota in cores (cgroup v2 ``cpu.max``, else v1's CFS quota), or
    None where there is none or it cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def usable_cores(cpus: list[int], quota: float | None) -> int:
    """How many threads can run at once: the CPUs, cut to the quota (rounded down, at least 1)."""
    if quota is None:
        return max(1, len(cpus))
    return max(1, min(len(cpus), math.floor(quota + 1e-9)))


class Load:
    """Samples how many cores other processes keep busy, on the CPUs this process may use."""

    def __init__(self, cpus: list[int], stat: Path = Path("/proc/stat")) -> None:
        self.cpus = self.names(cpus)
        self.stat = stat
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self.read()

    @staticmethod
    def names(cpus: list[int]) -> set[str]:
        return {f"cpu{c}" for c in cpus}

    def read(self) -> tuple[float, float, float] | None:
        """(busy CPU seconds of those CPUs, this process's CPU seconds, the clock), or None
        where ``/proc/stat`` cannot be read (not Linux)."""
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *values = line.split()
            if name in self.cpus:
                # user nice system idle iowait irq softirq steal: all but idle and iowait
                numbers = [int(v) for v in values[:8]]
                busy += sum(numbers) - numbers[3] - numbers[4]
        return busy / self.tick, self.own_seconds(), self.clock()

    @staticmethod
    def own_seconds() -> float:
        """This process's CPU seconds, every thread's."""
        own = os.times()
        return own.user + own.system

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def since_last(self) -> tuple[float, float] | None:
        """(cores other work kept busy, seconds) since the last call, or None where unknown."""
        now = self.read()
        if now is None or self.last is None:
            return None
        (busy0, own0, at0), (busy1, own1, at1) = self.last, now
        self.last = now
        seconds = at1 - at0
        if seconds <= 0:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds, seconds


def settle(threads: int, cores: int, others: float) -> int:
    """The next thread count, from the current one and the cores other work keeps busy."""
    down = max(1, cores - math.ceil(others - BUSY_ABOVE))
    up = max(1, cores - math.ceil(others - FREE_BELOW))
    if down < threads:
        return down
    return max(up, threads)


@dataclass
class Policy:
    """The threads this process runs its CPU work on, and how they were chosen."""

    cores: int
    threads: int
    chosen_by: str  # "--threads", "TEXTLSTM_THREADS", "OMP_NUM_THREADS" or "load"
    others: float | None = None  # cores other work kept busy at the first look
    quota: float | None = None
    seen: list[int] = field(default_factory=list)  # every count used, in order
    load: Load | None = None
    next_look: float = 0.0

    @property
    def following(self) -> bool:
        return self.load is not None

    def describe(self) -> str:
        """For the device line: ``2 threads (2 cores; followed)``."""
        plural = "s" if self.threads != 1 else ""
        if self.chosen_by != "load":
            return f"{self.threads} thread{plural} (set by {self.chosen_by})"
        busy = f", other work keeping {self.others:.1f} busy" if self.others else ""
        quota = f", CPU quota {self.quota:g}" if self.quota is not None else ""
        how = "followed" if self.following else "not followed"
        return f"{self.threads} thread{plural} ({self.cores} cores{quota}{busy}; {how})"

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threads": self.seen[0] if self.seen else self.threads,
            "cores": self.cores,
            "chosen_by": self.chosen_by,
        }
        if self.others is not None:
            out["others_busy"] = round(self.others, 2)
        if len(set(self.seen)) > 1:
            out["followed"] = self.seen
        return out


_policy: Policy | None = None
# the first look's window opens when this module is imported (the CLI imports it first thing),
# so that a command's own start-up time is the window and it seldom waits for one
_EARLY: Load | None = Load(usable_cpus())


def choose(requested: int | None = None, where: str = "--threads") -> Policy:
    """Set this process's threads and return how: ``requested`` (from ``where``), else
    ``TEXTLSTM_THREADS``, else ``OMP_NUM_THREADS``, else from the cores and the load, followed
    afterwards by ``follow``. Returns the policy in force if one was chosen already."""
    global _policy
    if requested is None and settings.launch().many:
        return for_run(True)  # each process of a torchrun job: its launcher's share
    fixed = _fixed(requested, where)
    cpus, quota = usable_cpus(), cpu_quota()
    cores = usable_cores(cpus, quota)
    if fixed is not None:
        _policy = Policy(cores, fixed[0], fixed[1], quota=quota)
    elif _policy is not None and _policy.following:
        return _policy
    else:
        _policy = _first_look(cores, quota, _early(cpus) or Load(cpus))
    _policy.seen.append(_policy.threads)
    _apply(_policy.threads)
    return _policy


def _fixed(requested: int | None, where: str) -> tuple[int, str] | None:
    """A thread count the user fixed, and where: ``requested`` (from ``where``), else the
    environment's (``settings.threads_env``); None leaves the choice to the load."""
    if requested is not None:
        if requested < 1:
            raise TextLSTMError(f"{param('threads', requested)}: must be 1 or more")
        return requested, where
    given = settings.threads_env()
    if given is None:
        return None
    value, name = given
    if not value.isdigit() or int(value) < 1:
        more = ", or auto" if name == settings.THREADS_ENV else ""
        raise TextLSTMError(
            f"{name}={value!r}: not a thread count; set a whole number of 1 or more{more}"
        )
    return int(value), name


def _early(cpus: list[int]) -> Load | None:
    """The load sampler opened at import, if its window is recent and on the same CPUs."""
    early = _EARLY
    if early is None or early.last is None or early.cpus != Load.names(cpus):
        return None
    return early if time.monotonic() - early.last[2] < EARLY_SECONDS else None


def _first_look(cores: int, quota: float | None, load: Load) -> Policy:
    if load.last is not None:  # a window long enough to see other work
        time.sleep(max(0.0, load.last[2] + FIRST_LOOK_SECONDS - time.monotonic()))
    sample = load.since_last()
    if sample is None:
        return Policy(cores, cores, "load", quota=quota)
    others = sample[0]
    threads = settle(cores, cores, others)
    follow = settings.threads_follow_seconds(FOLLOW_SECONDS)
    return Policy(
        cores,
        threads,
        "load",
        others,
        quota,
        load=load if follow > 0 else None,
        next_look=time.monotonic() + follow,
    )


def follow() -> None:
    """Called often by long jobs (each training step, each prediction chunk): every
    ``FOLLOW_SECONDS`` looks at the load again and moves the thread count. Costs a clock read
    between looks."""
    policy = _policy
    if policy is None or policy.load is None or time.monotonic() < policy.next_look:
        return
    policy.next_look = time.monotonic() + settings.threads_follow_seconds(FOLLOW_SECONDS)
    sample = policy.load.since_last()
    if sample is None:
        return
    threads = settle(policy.threads, policy.cores, sample[0])
    if threads != policy.threads:
        policy.threads = threads
        policy.seen.append(threads)
        _apply(threads)


def current() -> Policy | None:
    return _policy


_lanes = threading.local()  # .depth: how many two_lanes blocks this thread is in


@contextmanager
def two_lanes(wanted: bool = True) -> Iterator[None]:
    """Within (where ``wanted``), work that runs as two lanes does so, each on half the policy's
    threads, the calling thread on the first half (``lanes``); its own count is that half while
    inside, and the whole count again after. Blocks nest; another thread is not affected."""
    if not wanted:
        yield
        return
    _lanes.depth = getattr(_lanes, "depth", 0) + 1
    try:
        _reapply()
        yield
    finally:
        _lanes.depth -= 1
        _reapply()


def lanes() -> tuple[int, int] | None:
    """(this thread's, the worker's) threads where two lanes run here, else None: inside
    ``two_lanes``, with a policy of two threads or more, or one the load chose on two cores or
    more. Lanes share no barrier, so beside other work two lanes of one thread each still beat
    one thread alone; a count set by the user (or a torchrun launcher) is kept as it is."""
    policy = _policy
    if not getattr(_lanes, "depth", 0) or policy is None:
        return None
    count = policy.threads
    if count < 2 and policy.chosen_by == "load" and policy.cores >= 2:
        count = 2
    return (count - count // 2, count // 2) if count >= 2 else None


def _reapply() -> None:
    if _policy is not None:
        _apply(_policy.threads)


def _apply(threads: int) -> None:
    import torch

    split = lanes()
    if split is not None:
        threads = split[0]  # this thread's lane; the worker sets its own
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def for_run(many_processes: bool) -> Policy:
    """The policy of a training or pretraining about to start: the one chosen already (by the
    command), else one chosen now. A process of a multi-process job keeps the share of the
    cores its launcher gave it (``training.distributed.join``, or ``OMP_NUM_THREADS``), or the
    ``--threads`` given, and does not follow the load."""
    global _policy
    if many_processes and (_policy is None or _policy.chosen_by != "--threads"):
        import torch

        cores = usable_cores(usable_cpus(), cpu_quota())
        _policy = Policy(cores, torch.get_num_threads(), "torchrun", seen=[])
        _policy.seen.append(_policy.threads)
        return _policy
    if _policy is None:
        return choose()
    _apply(_policy.threads)  # what joining a process group may have changed
    return _policy


def device_note(device: Any) -> str:
    """``, 2 threads (...)`` for the device line of a CPU job; nothing on a GPU."""
    policy = _policy
    if policy is None or getattr(device, "type", "cpu") != "cpu":
        return ""
    return f", {policy.describe()}"


def meta() -> dict[str, Any] | None:
    return _policy.to_meta() if _policy is not None else None
