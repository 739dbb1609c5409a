"""What the commands draw with rich while the library works: the library's ``Events`` and
``TuneEvents`` hooks, rendered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar, cast

from rich.console import Console
from rich.table import Table

from textlstm.cli.app import cli_text, out
from textlstm.lm.events import LMEpoch, PretrainEvents
from textlstm.training.events import EpochResult, Events
from textlstm.tuning.events import TrialSummary, TuneEvents, TuneResult

E = TypeVar("E", bound=Events)


@contextmanager
def logged(progress: E, tensorboard: Path | None) -> Iterator[E]:
    """``progress``, or with ``--tensorboard DIR`` the same plus TensorBoard logs under DIR."""
    if tensorboard is None:
        yield progress
        return
    from textlstm.report.tensorboard import TensorBoardEvents

    with TensorBoardEvents(tensorboard, progress) as events:
        yield cast(E, events)  # it passes every hook on to progress, so it stands in for it
    if events.folder is not None:
        progress.message(f"TensorBoard logs: {events.folder} (tensorboard --logdir {tensorboard})")


class TrainProgress(Events):
    """A progress bar per epoch and a table row after each one."""

    HEADER = "[bold]epoch  train loss  val loss  val acc  val macro-F1   tok/s    time[/bold]"

    def __init__(self, console: Console | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = console or out
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[speed]:,.0f} tok/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.started = False
        self.epoch_began, self.tokens, self.loss = 0.0, 0, 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(cli_text(text), soft_wrap=True, markup=False)

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if not self.started:  # started late, so an input error is not preceded by a live display
            self.console.print(self.HEADER)
            self.progress.start()
            self.started = True
        self.epoch_began, self.tokens, self.loss = time.perf_counter(), 0, float("nan")
        self.task = self.progress.add_task(
            "train", total=batches, epoch=f"{epoch}/{epochs}", loss=0.0, speed=0.0
        )

    def batch_end(self, loss: float, tokens: int) -> None:
        self.tokens += tokens
        self.loss = loss if self.loss != self.loss else 0.95 * self.loss + 0.05 * loss  # NaN: first
        speed = self.tokens / max(time.perf_counter() - self.epoch_began, 1e-9)
        self.progress.update(self.task, advance=1, loss=self.loss, speed=speed)

    def epoch_end(self, result: EpochResult) -> None:
        self.progress.remove_task(self.task)
        star = " [green]*[/green]" if result.best else ""
        micro = "" if result.micro_f1 is None else f"  micro-F1 {result.micro_f1:.2%}"
        self.console.print(
            f"{result.epoch:>5}  {result.train_loss:>10.4f}  {result.validation_loss:>8.4f}  "
            f"{result.accuracy:>7.2%}  {result.macro_f1:>12.2%}  {result.tokens_per_second:>7,.0f}"
            f"  {result.seconds:>5.0f}s{star}{micro}"
        )


class PretrainProgress(TrainProgress, PretrainEvents):
    """The same progress bar; a row of perplexities after each epoch."""

    HEADER = "[bold]epoch  train loss  perplexity  backward     tok/s    time[/bold]"

    def lm_epoch_end(self, result: LMEpoch) -> None:
        self.progress.remove_task(self.task)
        backward = (
            f"{result.backward_perplexity:>8.1f}"
            if result.backward_perplexity is not None
            else "       -"
        )
        self.console.print(
            f"{result.epoch:>5}  {result.train_loss:>10.4f}  {result.perplexity:>10.1f}  {backward}"
            f"  {result.tokens_per_second:>8,.0f}  {result.seconds:>5.0f}s"
        )


def column_names(keys: list[str]) -> list[str]:
    """`train.lr` -> `lr`, unless two keys would share a name."""
    last = [key.split(".")[-1] for key in keys]
    return [name if last.count(name) == 1 else key for key, name in zip(keys, last)]


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TuneTable(TuneEvents):
    """The trials as a live table on a terminal, and a line as each trial starts and ends; the
    leaderboard when the study ends; the retrain's epochs as ``train`` draws them."""

    SHOWN = 20  # rows in the live table: the latest trials

    def __init__(
        self, keys: list[str], metric: str, live: bool = True, console: Console | None = None
    ) -> None:
        from rich.live import Live

        self.keys, self.metric, self.console = keys, metric, console or out
        self.rows: dict[int, dict[str, Any]] = {}
        self.live = (
            Live(self, console=self.console, refresh_per_second=2, transient=True) if live else None
        )
        self.training = TrainProgress(self.console)  # only the retrain reports epochs here

    def __enter__(self) -> TuneTable:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_live()
        self.training.__exit__()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich__(self) -> Table:
        table = Table(
            "trial",
            "state",
            "epoch",
            self.metric,
            "seconds",
            *column_names(self.keys),
            title="trials",
            title_justify="left",
        )
        for number in sorted(self.rows)[-self.SHOWN :]:
            row = self.rows[number]
            seconds = row["seconds"] if row["seconds"] is not None else time.time() - row["began"]
            table.add_row(
                str(number),
                row["state"],
                str(row["epoch"] or "-"),
                f"{row['value']:.4f}" if row["value"] is not None else "-",
                f"{seconds:.0f}",
                *[short(row["params"].get(k)) for k in self.keys],
            )
        return table

    def message(self, text: str) -> None:
        self.console.print(cli_text(text), soft_wrap=True, markup=False)

    def trial_start(self, number: int, params: dict[str, Any]) -> None:
        self.rows[number] = {
            "params": params,
            "state": "running",
            "epoch": 0,
            "value": None,
            "began": time.time(),
            "seconds": None,
        }
        self.console.print(
            f"trial {number}: " + ", ".join(f"{k} = {short(v)}" for k, v in params.items()),
            soft_wrap=True,
            markup=False,
        )

    def trial_epoch(self, number: int, epoch: int, value: float) -> None:
        if number in self.rows:
            self.rows[number].update(epoch=epoch, value=value)

    def trial_end(self, trial: TrialSummary) -> None:
        row = self.rows.setdefault(
            trial.number, {"params": trial.params, "epoch": 0, "began": time.time()}
        )
        row.update(
            state="rerun" if trial.orphaned else trial.state.lower(),
            value=trial.value,
            seconds=trial.seconds or 0.0,
        )
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        extra = f" ({cli_text(trial.reason)})" if trial.reason else ""
        self.console.print(
            f"trial {trial.number}: {trial.state.lower()} {value}{extra}",
            soft_wrap=True,
            markup=False,
        )

    def study_end(self, result: TuneResult) -> None:
        self._stop_live()
        print_leaderboard(result, self.console)

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.training.epoch_start(epoch, epochs, batches)

    def batch_end(self, loss: float, tokens: int) -> None:
        self.training.batch_end(loss, tokens)

    def epoch_end(self, result: EpochResult) -> None:
        self.training.epoch_end(result)


def print_leaderboard(result: TuneResult, console: Console) -> None:
    names = column_names(list(result.best_params))
    board = Table(
        "trial",
        "state",
        result.metric,
        "best epoch",
        "seconds",
        "run folder",
        *names,
        title="leaderboard",
        title_justify="left",
    )
    ranked = sorted(
        result.trials,
        key=lambda t: (t.orphaned, t.state != "COMPLETE", -(t.value or 0.0), t.number),
    )
    for t in ranked:
        board.add_row(
            str(t.number),
            "rerun" if t.orphaned else t.state.lower(),
            f"{t.value:.4f}" if t.value is not None else "-",
            str(t.best_epoch or "-"),
            f"{t.seconds:.0f}" if t.seconds is not None else "-",
            "kept" if t.run_dir else "-",
            *[short(t.params.get(k)) for k in result.best_params],
        )
    # a log file need not wrap the table at 80 columns
    (console if console.is_terminal else Console(width=200, highlight=False)).print(board)
    console.print(
        f"best: trial {result.best_trial}, validation {result.metric} "
        f"{result.best_value:.4f} with "
        + ", ".join(f"{k} = {short(v)}" for k, v in result.best_params.items()),
        soft_wrap=True,
    )
    for plot in result.plots:
        console.print(f"[green]wrote[/green] {plot}", soft_wrap=True)
    console.print(
        f"[green]wrote[/green] {result.best_recipe}; next: textlstm train {result.best_recipe}",
        soft_wrap=True,
    )
