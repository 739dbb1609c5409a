"""What pretraining reports. No torch here, so the CLI can draw progress before it loads torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textlstm.training.events import Events


@dataclass
class LMEpoch:
    epoch: int
    train_loss: float  # the sampled softmax's mean loss over the epoch's steps
    perplexity: float  # the forward model's, full softmax, on the held-out validation text
    backward_perplexity: float | None  # the backward model's, when there is one
    learning_rate: float
    seconds: float
    tokens_per_second: float  # stream tokens read per second (each direction reads every one)
    steps: int  # steps done in this epoch (fewer than planned when the budget ran out)


@dataclass
class PretrainResult:
    run_dir: Path
    epochs: list[LMEpoch]
    stopped: str  # "completed" | "budget" | "interrupted"
    seconds: float
    tokens: int  # stream tokens trained on, over every epoch


class PretrainEvents(Events):
    """``Events`` plus the end of a language-model epoch; the default does nothing."""

    def lm_epoch_end(self, result: LMEpoch) -> None: ...
