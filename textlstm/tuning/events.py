"""What a study reports: each trial, the whole study, and the hooks that receive them. No torch or
Optuna here, so the CLI can draw them without importing either before it must."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textlstm.training.events import Events, TrainResult


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

    def study_end(self, result: TuneResult) -> None:
        """The study's results are written; called before the retrain, if any."""
