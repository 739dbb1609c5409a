"""Hyperparameter search over a recipe's ``[tune.space]``, on Optuna.

The study lives in ``<out>/<name>-tune/``: in Optuna's journal file storage (``study.log``), which
several processes can share, or in a database server given by ``storage`` (Optuna's RDB storage:
PostgreSQL, MySQL), which workers on several machines can share. Running ``tune`` again on the same
recipe continues the same study and runs only the trials still missing. Each trial is an ordinary
training run (in ``trials/<number>/``); its per-epoch validation metric is reported to Optuna so
that a pruner can stop hopeless trials early. At the end, ``best.toml`` holds the full recipe with
the best values, and ``history.png`` / ``importances.png`` plot the study.

Workers. ``jobs`` worker processes share the study; a worker claims a trial under a file lock
(so workers on one machine never run more trials than asked), writes a heartbeat into the trial
every few seconds, and names itself (host, pid, process start time) in it. A trial left RUNNING
by a dead worker is marked failed and ``orphaned`` and run again: at once when the worker was on
this machine and its process is gone, after ``STALE_SECONDS`` without a heartbeat otherwise.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from textlstm.errors import RecipeError, TextLSTMError
from textlstm.text.cache import Options
from textlstm.recipe import Recipe, SpaceEntry, recipe_from_dict
from textlstm.training import EpochResult, Events, TrainResult, train

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # no heartbeat for this long from a worker on another machine: it is dead
POLL_SECONDS = 1.0


@dataclass
class TrialSummary:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING
    seconds: float | None
    run_dir: str | None = None  # None once the folder is gone (pruned, failed, or not kept)
    reason: str | None = None  # why a trial failed
    best_epoch: int | None = None
    orphaned: bool = False  # cut short by a kill or Ctrl-C: not counted, run again


@dataclass
class TuneResult:
    folder: Path
    metric: str
    best_params: dict[str, Any]
    best_value: float
    best_recipe: Path
    best_trial: int
    trials: list[TrialSummary] = field(default_factory=list)
    ran: int = 0  # trials run by this call (the rest came from earlier calls or other machines)
    interrupted: bool = False  # stopped by Ctrl-C; what finished is kept and reported
    plots: list[Path] = field(default_factory=list)
    retrained: TrainResult | None = None


class TuneEvents(Events):
    """Hooks for a tuning run; the CLI draws a live table from them. With ``jobs`` > 1 they are
    called in the calling process from what the workers write into the study."""

    def trial_start(self, number: int, params: dict[str, Any]) -> None: ...

    def trial_epoch(self, number: int, epoch: int, value: float) -> None: ...

    def trial_end(self, trial: TrialSummary) -> None: ...


def _suggest(trial: Any, key: str, entry: SpaceEntry) -> Any:
    low_high = entry.values
    if entry.kind == "choice":
        return trial.suggest_categorical(key, entry.values)
    if entry.kind == "int_uniform":
        return trial.suggest_int(key, low_high[0], low_high[1])
    return trial.suggest_float(key, low_high[0], low_high[1], log=entry.kind == "log_uniform")


def with_params(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """The recipe with each dotted key set; validated like any recipe."""
    raw = recipe.model_dump(mode="json", exclude_none=True)
    for key, value in params.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return recipe_from_dict(raw, recipe.source or "<recipe>")


def _sampler(kind: str, seed: int) -> Any:
    import optuna

    seed %= 2**32
    return (optuna.samplers.TPESampler(seed=seed) if kind == "tpe"
            else optuna.samplers.RandomSampler(seed=seed))


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show it as given
        return url


def open_storage(folder: Path, url: str | None) -> Any:
    """The study's storage: the journal file in the tune folder, or a database server."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        return JournalStorage(JournalFileBackend(str(folder / "study.log")))
    shown = _hide_password(url)
    try:
        return _rdb(url)
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise TextLSTMError(f"--storage {shown}: the database driver is missing ({cause}); "
                            "install it, e.g. pip install 'psycopg[binary]' for postgresql:// "
                            "or pip install pymysql for mysql+pymysql://") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TextLSTMError(f"--storage {shown}: cannot open the study database ({first}); give a "
                            "URL such as postgresql://user:password@host:5432/dbname") from None


def _rdb(url: str) -> Any:
    """Optuna's RDB storage. Workers that start together on a new database race to create its
    tables; the loser sees a duplicate-key error, and on a second try finds them made."""
    import random

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError):
            if attempt == 5:
                raise
            time.sleep(0.2 + random.random())


def _study(recipe: Recipe, storage: Any, prune: bool) -> Any:
    import optuna

    assert recipe.tune is not None
    cfg = recipe.tune
    pruner: Any = optuna.pruners.NopPruner()
    if prune and cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    elif prune and cfg.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=recipe.train.epochs)
    return optuna.create_study(study_name=recipe.name, storage=storage,
                               sampler=_sampler(cfg.sampler, cfg.seed), pruner=pruner,
                               direction="maximize", load_if_exists=True)


@dataclass
class _Plan:
    """What every worker of one `tune` call needs (picklable: it crosses to spawned workers)."""
    recipe: Recipe
    folder: Path
    storage: str | None
    wanted: int
    deadline: float | None
    prune: bool
    data_dir: str | Path | None
    device: str
    options: Options | None
    keep: int | None


def tune(recipe: Recipe, out_dir: str | Path = "runs", trials: int | None = None,
         timeout: float | None = None, prune: bool = True, data_dir: str | Path | None = None,
         device: str = "auto", events: TuneEvents | None = None,
         options: Options | None = None, jobs: int = 1, storage: str | None = None,
         keep: int | None = None, retrain: bool = False) -> TuneResult:
    """Run the study until it has ``trials`` finished trials (or ``timeout`` seconds pass).

    ``jobs`` worker processes run trials side by side (each gets an equal share of the cores);
    ``storage`` is a database URL for a study shared by workers on several machines; ``keep``
    keeps only the best N trial run folders; ``retrain`` then trains the best configuration as
    ``tune.retrain`` says (on train+validation by default) into ``<tune folder>/retrain/``."""
    import optuna

    if recipe.tune is None or not recipe.tune.space:
        raise RecipeError(f"{recipe.source or '<recipe>'}: tune: no [tune.space] to search; add "
                          'e.g. [tune.space] "train.lr" = { log_uniform = [3e-4, 3e-3] }')
    if jobs < 1:
        raise TextLSTMError(f"--jobs {jobs}: give at least 1 worker")
    cfg, events = recipe.tune, events or TuneEvents()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(out_dir) / f"{recipe.name}-tune"
    study_storage = open_storage(folder, storage) if storage else None  # fails before mkdir
    folder.mkdir(parents=True, exist_ok=True)
    study = _study(recipe, study_storage or open_storage(folder, None), prune)
    with _claim(folder):
        _fail_stale(study)
    existing = _finished(study)
    seconds = timeout or cfg.timeout
    plan = _Plan(recipe, folder, storage, trials or cfg.trials,
                 time.time() + seconds if seconds else None, prune,
                 str(data_dir) if data_dir is not None else None, device, options,
                 keep or cfg.keep)
    remaining = max(0, plan.wanted - existing)
    interrupted = False
    if remaining:
        workers = min(jobs, remaining)
        events.message(f"study {folder}: {existing} trial(s) done, running {remaining} more"
                       + (f" in {workers} worker processes" if workers > 1 else ""))
        try:
            if workers == 1:
                _work(study, plan, cfg.seed + existing, events)
            else:
                interrupted = _pool(study, plan, workers, cfg.seed + existing, events)
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            events.message("interrupted: the study keeps every finished trial; run the same "
                           "command again to continue it")
    _keep_best(study, plan.keep)
    ran = _finished(study) - existing
    result = _results(recipe, study, folder, ran)
    result.interrupted = interrupted
    result.plots = _plots(study, folder, cfg.metric, events)
    if retrain and not interrupted:
        result.retrained = retrain_best(recipe, result, data_dir, device, events, options)
    return result


def _finished(study: Any) -> int:
    """Trials that count against the budget: not those cut short by a kill or Ctrl-C."""
    return sum(t.state.name in FINISHED and not t.user_attrs.get("orphaned")
               for t in study.get_trials(deepcopy=False))


def _claimed(trial: Any) -> bool:
    """Finished or running, and not cut short: a trial that takes a place in the budget."""
    return (trial.state.name in FINISHED or trial.state.name == "RUNNING") and not \
        trial.user_attrs.get("orphaned")


def _counted(study: Any) -> int:
    """Finished trials plus those running now: what a new claim is weighed against."""
    return sum(_claimed(t) for t in study.get_trials(deepcopy=False))


@contextlib.contextmanager
def _claim(folder: Path) -> Iterator[None]:
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


def _alive(worker: str) -> bool | None:
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


def _stale(trial: Any, now: float) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker:
        alive = _alive(worker)
        if alive is not None:
            return not alive
    last = trial.user_attrs.get("heartbeat") or (
        trial.datetime_start.timestamp() if trial.datetime_start else 0.0)
    return now - last > STALE_SECONDS


def _orphan(study: Any, trial: Any, reason: str) -> None:
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


def _fail_stale(study: Any) -> None:
    now = time.time()
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "RUNNING" and _stale(trial, now):
            _orphan(study, trial, "its worker died; the trial is run again")


class _Heartbeat:
    """Writes the time into the running trial every few seconds, from a thread."""

    def __init__(self, trial: Any) -> None:
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="tune-heartbeat")

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # a trial finished under us, or the database blinked
                pass

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def _work(study: Any, plan: _Plan, seed: int, events: TuneEvents) -> None:
    """One worker: claim a trial, run it, record it; until the study has its trials."""
    import optuna

    assert plan.recipe.tune is not None
    study.sampler = _sampler(plan.recipe.tune.sampler, seed)  # distinct per worker and resume
    me = worker_id()
    while plan.deadline is None or time.time() < plan.deadline:
        with _claim(plan.folder):
            _fail_stale(study)
            if _counted(study) >= plan.wanted:
                break
            trial = study.ask()
            trial.set_user_attr("worker", me)
            trial.set_user_attr("heartbeat", time.time())
        if _surplus(study, trial.number, plan.wanted):  # a worker on another machine was quicker
            _orphan(study, trial, "not needed: the study already had its trials")
            break
        state, value = optuna.trial.TrialState.COMPLETE, None
        with _Heartbeat(trial):
            try:
                value = _run_trial(trial, plan, events)
            except optuna.TrialPruned:
                state = optuna.trial.TrialState.PRUNED
            except KeyboardInterrupt:  # not the trial's fault: it is run again on continuing
                _orphan(study, trial, "interrupted; the trial is run again")
                events.trial_end(_summary(study.get_trials(deepcopy=False)[trial.number]))
                raise
            except Exception as exc:  # a bad combination, NaN loss, out of memory: go on
                trial.set_user_attr("reason", _reason(exc))
                state = optuna.trial.TrialState.FAIL
        try:
            frozen = study.tell(trial, value, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            frozen = study.get_trials(deepcopy=False)[trial.number]  # marked dead by a peer
        if plan.keep:
            with _claim(plan.folder):
                _keep_best(study, plan.keep)
        events.trial_end(_summary(frozen))


def _surplus(study: Any, number: int, wanted: int) -> bool:
    return sum(_claimed(t) for t in study.get_trials(deepcopy=False) if t.number < number) >= wanted


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TextLSTMError):
        return exc.lines[0]
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_trial(trial: Any, plan: _Plan, events: TuneEvents) -> float:
    recipe = plan.recipe
    assert recipe.tune is not None
    params = {key: _suggest(trial, key, entry) for key, entry in recipe.tune.space.items()}
    events.trial_start(trial.number, params)
    candidate = with_params(recipe, params)
    candidate = candidate.model_copy(update={"train": candidate.train.model_copy(
        update={"metric": recipe.tune.metric})})
    out = plan.folder / "trials" / f"{trial.number:04d}"
    reporter = _Reporter(trial, recipe.tune.metric, events)
    try:
        result = train(candidate, out, plan.data_dir, plan.device, reporter, plan.options)
    except BaseException:  # pruned, failed or killed: nothing in the folder is worth keeping
        shutil.rmtree(out, ignore_errors=True)
        raise
    if result.stopped == "interrupted":  # Ctrl-C inside training: stop the study, not just the run
        shutil.rmtree(out, ignore_errors=True)
        raise KeyboardInterrupt
    trial.set_user_attr("run_dir", str(result.run_dir))
    trial.set_user_attr("best_epoch", result.best_epoch)
    if not math.isfinite(result.best_value):
        raise TextLSTMError("no finite validation score")
    return result.best_value


class _Reporter(Events):
    """Forwards each epoch's validation metric to Optuna; raises TrialPruned when told to."""

    def __init__(self, trial: Any, metric: str, events: TuneEvents) -> None:
        self.trial, self.metric, self.events = trial, metric, events

    def epoch_end(self, result: EpochResult) -> None:
        import optuna

        value = getattr(result, self.metric)
        self.trial.report(value, result.epoch)
        self.events.trial_epoch(self.trial.number, result.epoch, value)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")


# ---- several worker processes -------------------------------------------------------------


def _pool(study: Any, plan: _Plan, workers: int, seed: int, events: TuneEvents) -> bool:
    """Run ``workers`` spawned processes on the study and relay what they record to ``events``.
    Returns whether the study was interrupted (Ctrl-C)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [context.Process(target=_worker_main, name=f"textlstm-tune-{i}",
                             args=(plan, seed + i * 1_000_003, os.getpid(), threads))
             for i in range(workers)]
    watcher = _Watcher(study, events)
    interrupted = False
    for proc in procs:
        proc.start()
    try:
        while any(p.is_alive() for p in procs):
            watcher.poll()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = True
        for proc in procs:  # each records its trial as interrupted, then exits
            if proc.is_alive():
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


def _worker_main(plan: _Plan, seed: int, parent: int, threads: int) -> None:
    """A spawned worker: ignores the terminal's Ctrl-C (the parent passes it on as SIGTERM, once),
    and exits when the parent dies, leaving its trial to be found stale and run again."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    torch.set_num_threads(threads)

    def watchdog() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True, name="tune-watchdog").start()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.folder, plan.storage)
    study = _study(plan.recipe, storage, plan.prune)
    try:
        _work(study, plan, seed, TuneEvents())
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Watcher:
    """Turns what workers write into the study into trial_start / trial_epoch / trial_end."""

    def __init__(self, study: Any, events: TuneEvents) -> None:
        self.study, self.events = study, events
        self.started: set[int] = set()
        self.epochs: dict[int, int] = {}
        self.ended = {t.number for t in study.get_trials(deepcopy=False)
                      if t.state.name != "RUNNING"}

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
                self.events.trial_end(_summary(trial))


# ---- results ------------------------------------------------------------------------------


def _summary(trial: Any) -> TrialSummary:
    seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
               if trial.datetime_complete and trial.datetime_start else None)
    run_dir = trial.user_attrs.get("run_dir")
    return TrialSummary(trial.number, dict(trial.params), trial.value, trial.state.name, seconds,
                        run_dir if run_dir and Path(run_dir).is_dir() else None,
                        trial.user_attrs.get("reason"), trial.user_attrs.get("best_epoch"),
                        bool(trial.user_attrs.get("orphaned")))


def _keep_best(study: Any, keep: int | None) -> None:
    """Remove the run folders of every complete trial but the best ``keep``."""
    if not keep:
        return
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE" and t.value is not None]
    complete.sort(key=lambda t: (-t.value, t.number))
    for trial in complete[keep:]:
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir and Path(run_dir).is_dir():
            shutil.rmtree(Path(run_dir).parent.parent, ignore_errors=True)  # trials/<number>/


def _results(recipe: Recipe, study: Any, folder: Path, ran: int) -> TuneResult:
    assert recipe.tune is not None
    summaries = [_summary(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in summaries if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        failed = [t for t in summaries if t.reason and t.state == "FAIL"]
        why = f": trial {failed[-1].number} failed: {failed[-1].reason}" if failed else ""
        raise TextLSTMError(f"{folder}: no trial finished{why}")
    best = max(complete, key=lambda t: (t.value, -t.number))
    best_recipe = with_params(recipe, best.params)
    path = folder / "best.toml"
    tmp = folder / f".best.toml.{time.time_ns()}.tmp"
    tmp.write_text(f"# best of {len(complete)} finished trial(s) of {folder}: validation "
                   f"{recipe.tune.metric} {best.value:.4f} (trial {best.number}, best epoch "
                   f"{best.best_epoch})\n" + best_recipe.to_toml(), encoding="utf-8")
    tmp.replace(path)
    board = folder / f".leaderboard.json.{time.time_ns()}.tmp"
    board.write_text(json.dumps(
        [t.__dict__ for t in sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))],
        indent=1, default=str), encoding="utf-8")
    board.replace(folder / "leaderboard.json")
    return TuneResult(folder, recipe.tune.metric, best.params, float(best.value), path,
                      best.number, summaries, ran)


def _plots(study: Any, folder: Path, metric: str, events: TuneEvents) -> list[Path]:
    """history.png (the metric of every trial, and the best so far) and importances.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplot

    written = []
    for name, draw in (("history.png", oplot.plot_optimization_history),
                       ("importances.png", oplot.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study, target_name=f"validation {metric}")
                figure = axes.figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                tmp = folder / f".{name}.{time.time_ns()}.tmp.png"
                figure.savefig(tmp, dpi=110)
                plt.close(figure)
            tmp.replace(folder / name)
            written.append(folder / name)
        except Exception as exc:  # e.g. importances need two finished trials that differ
            events.message(f"no {name}: {_reason(exc)}")
    return written


def retrain_best(recipe: Recipe, result: TuneResult, data_dir: str | Path | None, device: str,
                 events: Events, options: Options | None) -> TrainResult:
    """Train the best configuration once more, as ``tune.retrain`` says: on the train split (as
    the trial did), or on train+validation for the best trial's number of epochs, keeping the
    last epoch (validation rows are training rows then, so they cannot pick an epoch)."""
    from textlstm.recipe import load_recipe

    assert recipe.tune is not None
    best = load_recipe(result.best_recipe)
    if recipe.tune.retrain == "train+validation":
        trial = next(t for t in result.trials if t.number == result.best_trial)
        epochs = trial.best_epoch or best.train.epochs
        data = best.data.model_copy(update={
            "train_split": f"{best.data.train_split}+{best.data.validation_split}"})
        train_cfg = best.train.model_copy(update={"epochs": epochs, "patience": 0,
                                                  "keep": "last"})
        best = best.model_copy(update={"data": data, "train": train_cfg})
        events.message(f"retraining the best configuration on {data.train_split} for {epochs} "
                       "epoch(s), the best trial's best epoch")
    else:
        events.message("retraining the best configuration on the train split")
    return train(best, result.folder / "retrain", data_dir, device, events, options)
