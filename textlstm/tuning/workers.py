"""Workers that share one study: on this machine, ``jobs`` spawned processes; across machines,
every ``tune`` given the same database.

A worker claims a trial under a file lock (so the workers of one machine never run more trials
than asked), writes a heartbeat into the trial every few seconds, and names itself (host, pid,
process start time) in it. A trial left RUNNING by a dead worker is marked failed and ``orphaned``
and run again: at once when the worker was on this machine and its process is gone, after
``STALE_SECONDS`` without a heartbeat otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textlstm.tuning.events import TuneEvents
from textlstm.tuning.results import keep_best, summary
from textlstm.tuning.study import Plan, open_storage, open_study, reason, run_trial, sampler

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # no heartbeat for this long from a worker on another machine: it is dead
POLL_SECONDS = 1.0


def finished(study: Any) -> int:
    """Trials that count against the budget: not those cut short by a kill or Ctrl-C."""
    return sum(
        t.state.name in FINISHED and not t.user_attrs.get("orphaned")
        for t in study.get_trials(deepcopy=False)
    )


def claimed(trial: Any) -> bool:
    """Finished or running, and not cut short: a trial that takes a place in the budget."""
    return (
        trial.state.name in FINISHED or trial.state.name == "RUNNING"
    ) and not trial.user_attrs.get("orphaned")


def counted(study: Any) -> int:
    """Finished trials plus those running now: what a new claim is weighed against."""
    return sum(claimed(t) for t in study.get_trials(deepcopy=False))


def surplus(study: Any, number: int, wanted: int) -> bool:
    return sum(claimed(t) for t in study.get_trials(deepcopy=False) if t.number < number) >= wanted


@contextlib.contextmanager
def claim(folder: Path) -> Iterator[None]:
    """Serialises claiming trials among the workers of this machine."""
    import fcntl

    with open(folder / ".claim.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc does not tell): with
    the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def worker_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def alive(worker: str) -> bool | None:
    """Whether the worker's process still runs; None when it ran on another machine."""
    host, pid, started = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    if Path("/proc").is_dir() and started:
        return _start_time(int(pid)) == started
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(trial: Any, now: float) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker:
        running = alive(worker)
        if running is not None:
            return not running
    last = trial.user_attrs.get("heartbeat") or (
        trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    )
    return now - last > STALE_SECONDS


def orphan(study: Any, trial: Any, reason: str) -> None:
    """Mark a trial that will never finish as failed, and as orphaned: it does not count against
    the budget, so the study runs a new trial in its place."""
    import optuna

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "reason", reason)
        storage.set_trial_user_attr(trial._trial_id, "orphaned", True)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        pass  # another worker got there first


def fail_stale(study: Any) -> None:
    now = time.time()
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "RUNNING" and stale(trial, now):
            orphan(study, trial, "its worker died; the trial is run again")


class Heartbeat:
    """Writes the time into the running trial every few seconds, from a thread."""

    def __init__(self, trial: Any) -> None:
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="tune-heartbeat")

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001, S110 - a trial finished under us, or the database blinked
                pass

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


STOPPING = threading.Event()  # set in a worker process by the parent's SIGTERM (Ctrl-C)


def work(study: Any, plan: Plan, seed: int, events: TuneEvents) -> None:
    """One worker: claim a trial, run it, record it; until the study has its trials."""
    import optuna

    assert plan.recipe.tune is not None
    study.sampler = sampler(plan.recipe.tune.sampler, seed)  # distinct per worker and resume
    me = worker_id()
    while plan.deadline is None or time.time() < plan.deadline:
        if STOPPING.is_set():  # told to stop between two trials: start no other
            raise KeyboardInterrupt
        with claim(plan.folder):
            fail_stale(study)
            if counted(study) >= plan.wanted:
                break
            trial = study.ask()
            trial.set_user_attr("worker", me)
            trial.set_user_attr("heartbeat", time.time())
        if surplus(study, trial.number, plan.wanted):  # a worker on another machine was quicker
            orphan(study, trial, "not needed: the study already had its trials")
            break
        state, value = optuna.trial.TrialState.COMPLETE, None
        with Heartbeat(trial):
            try:
                value = run_trial(trial, plan, events)
            except optuna.TrialPruned:
                state = optuna.trial.TrialState.PRUNED
            except KeyboardInterrupt:  # not the trial's fault: it is run again on continuing
                interrupted(study, trial, events)
            except Exception as exc:  # noqa: BLE001 - a bad combination, NaN loss, out of memory: go on
                if STOPPING.is_set():  # the stop landed in a library that turned it into an error
                    interrupted(study, trial, events)
                trial.set_user_attr("reason", reason(exc))
                state = optuna.trial.TrialState.FAIL
        try:
            frozen = study.tell(trial, value, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            frozen = study.get_trials(deepcopy=False)[trial.number]  # marked dead by a peer
        if plan.keep:
            with claim(plan.folder):
                keep_best(study, plan.keep)
        events.trial_end(summary(frozen))


def interrupted(study: Any, trial: Any, events: TuneEvents) -> None:
    """Record the trial as interrupted (it is run again on continuing) and stop the worker."""
    orphan(study, trial, "interrupted; the trial is run again")
    events.trial_end(summary(study.get_trials(deepcopy=False)[trial.number]))
    raise KeyboardInterrupt


def pool(study: Any, plan: Plan, workers: int, seed: int, events: TuneEvents) -> bool:
    """Run ``workers`` spawned processes on the study and relay what they record to ``events``.
    Returns whether the study was interrupted (Ctrl-C)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [
        context.Process(
            target=_worker_main,
            name=f"textlstm-tune-{i}",
            args=(plan, seed + i * 1_000_003, os.getpid(), threads),
        )
        for i in range(workers)
    ]
    watcher = Watcher(study, events)
    for proc in procs:
        proc.start()
    with ctrl_c_flag() as stop:
        while any(p.is_alive() for p in procs) and not stop.pressed:
            watcher.poll()
            time.sleep(POLL_SECONDS)
        interrupted = stop.pressed
        if interrupted:
            for proc in procs:  # each records its trial as interrupted, then exits
                if proc.is_alive() and proc.pid is not None:
                    os.kill(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.join(60)
                if proc.is_alive():
                    proc.kill()
    watcher.poll()
    failed = [p for p in procs if p.exitcode not in (0, None) and not interrupted]
    for proc in failed:
        events.message(f"worker {proc.name} ended with exit code {proc.exitcode}")
    return interrupted


class CtrlC:
    pressed = False


@contextlib.contextmanager
def ctrl_c_flag() -> Iterator[CtrlC]:
    """Ctrl-C sets ``pressed`` instead of raising wherever the main thread happens to be (inside
    a storage read, say); a second Ctrl-C raises KeyboardInterrupt as usual. A plain attribute,
    not a lock-based Event: a handler that took a lock the interrupted code holds would hang."""
    stop = CtrlC()

    def handler(signum: int, frame: Any) -> None:
        if stop.pressed:
            raise KeyboardInterrupt
        stop.pressed = True

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_main(plan: Plan, seed: int, parent: int, threads: int) -> None:
    """A spawned worker: ignores the terminal's Ctrl-C (the parent passes it on as SIGTERM, once),
    and exits when the parent dies, leaving its trial to be found stale and run again."""
    from textlstm import threads as cpu

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    cpu.choose(threads, "tune --jobs")  # the cores shared out among the workers

    def watchdog() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True, name="tune-watchdog").start()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.folder, plan.storage)
    study = open_study(plan.recipe, storage, plan.prune)
    try:
        work(study, plan, seed, TuneEvents())
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _raise_interrupt(signum: int, frame: Any) -> None:
    """The parent's stop (SIGTERM), once: the worker records its trial and exits."""
    if STOPPING.is_set():
        return
    STOPPING.set()
    raise KeyboardInterrupt


class Watcher:
    """Turns what workers write into the study into trial_start / trial_epoch / trial_end."""

    def __init__(self, study: Any, events: TuneEvents) -> None:
        self.study, self.events = study, events
        self.started: set[int] = set()
        self.epochs: dict[int, int] = {}
        self.ended = {
            t.number for t in study.get_trials(deepcopy=False) if t.state.name != "RUNNING"
        }

    def poll(self) -> None:
        for trial in self.study.get_trials(deepcopy=False):
            number = trial.number
            if number in self.ended:
                continue
            if number not in self.started and (trial.params or trial.state.name != "RUNNING"):
                self.started.add(number)
                self.events.trial_start(number, dict(trial.params))
            for epoch in sorted(trial.intermediate_values):
                if epoch > self.epochs.get(number, 0):
                    self.epochs[number] = epoch
                    self.events.trial_epoch(number, epoch, trial.intermediate_values[epoch])
            if trial.state.name != "RUNNING":
                self.ended.add(number)
                self.events.trial_end(summary(trial))
