"""What training reports: each epoch's result, the run's result, and the hooks that receive them.
No torch here, so the CLI can draw progress without importing it before it must."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    validation_loss: float
    accuracy: float
    macro_f1: float
    learning_rate: float
    seconds: float
    tokens_per_second: float
    best: bool = False
    micro_f1: float | None = None  # multi-label runs

    def metric(self, name: str) -> float:
        value = getattr(self, name)
        return self.accuracy if value is None else float(value)


@dataclass
class TrainResult:
    run_dir: Path
    metric: str
    best_epoch: int
    best_value: float
    epochs: list[EpochResult]
    stopped: str  # "completed" | "early_stopping" | "interrupted"
    seconds: float
    splits: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Events:
    """Progress hooks; the default does nothing. The CLI subclasses it to draw progress."""

    def message(self, text: str) -> None: ...

    def run_start(self, folder: Path, recipe: str, step: int = 0) -> None:
        """The run's folder (``.partial`` while it trains), its resolved recipe as TOML, and the
        optimizer steps done before this session (a resumed pretraining)."""

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_end(self, loss: float, tokens: int) -> None: ...

    def epoch_end(self, result: EpochResult) -> None: ...
