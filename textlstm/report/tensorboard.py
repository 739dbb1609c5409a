"""``--tensorboard DIR``: a run's scalars as TensorBoard event files, written through PyTorch's
``SummaryWriter`` (the optional ``tensorboard`` package), beside whatever else draws progress.

Each run writes under ``DIR/<run folder's parent>/<run stamp>/``, so ``tensorboard --logdir DIR``
lists every run of every recipe, and a resumed run goes on in the same folder. Tags:
``batch/train_loss`` per optimizer step; per epoch ``epoch/train_loss``, ``epoch/learning_rate``,
``epoch/tokens_per_second`` and, for a classifier, ``epoch/validation_loss``,
``epoch/validation_accuracy``, ``epoch/validation_macro_f1``; for a language model,
``epoch/perplexity`` (and ``epoch/backward_perplexity``). The resolved recipe is the text
``recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from textlstm.errors import TextLSTMError
from textlstm.lm.events import LMEpoch, PretrainEvents
from textlstm.training.events import EpochResult, Events

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

PARTIAL = ".partial"
INSTALL = "pip install 'textlstm[tensorboard]'"


def writer_class() -> type[SummaryWriter]:
    """PyTorch's ``SummaryWriter``, or one line saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TextLSTMError(
            f"--tensorboard: the tensorboard package is not installed; {INSTALL}"
        ) from None
    return SummaryWriter


class TensorBoardEvents(PretrainEvents):
    """Writes the run's scalars under ``log_dir`` and passes every hook on to ``inner`` (the
    progress display, say). Use it as a context manager, or call ``close``."""

    def __init__(self, log_dir: str | Path, inner: Events | None = None) -> None:
        self.root = Path(log_dir)
        self.inner = inner or PretrainEvents()
        self.factory = writer_class()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TextLSTMError(
                f"--tensorboard {self.root}: cannot create the folder ({exc.strerror}); "
                "give a writable folder"
            ) from None
        self.writer: Any = None
        self.step = 0
        self.folder: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def message(self, text: str) -> None:
        self.inner.message(text)

    def run_start(self, folder: Path, recipe: str, step: int = 0) -> None:
        self.close()
        stamp = folder.name.removesuffix(PARTIAL)
        self.folder = self.root / folder.parent.name / stamp
        self.writer = self.factory(log_dir=str(self.folder))
        indented = "\n".join("    " + line for line in recipe.splitlines())  # Markdown code
        self.writer.add_text("recipe", indented, step)
        self.step = step
        self.inner.run_start(folder, recipe, step)

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        # a classifier resumes at an epoch boundary; a language model mid-epoch, from run_start
        self.step = max(self.step, (epoch - 1) * batches)
        self.inner.epoch_start(epoch, epochs, batches)

    def batch_end(self, loss: float, tokens: int) -> None:
        self.step += 1
        if self.writer is not None:
            self.writer.add_scalar("batch/train_loss", loss, self.step)
        self.inner.batch_end(loss, tokens)

    def epoch_end(self, result: EpochResult) -> None:
        self._scalars(
            result.epoch,
            train_loss=result.train_loss,
            validation_loss=result.validation_loss,
            validation_accuracy=result.accuracy,
            validation_macro_f1=result.macro_f1,
            learning_rate=result.learning_rate,
            tokens_per_second=result.tokens_per_second,
        )
        self.inner.epoch_end(result)

    def lm_epoch_end(self, result: LMEpoch) -> None:
        self._scalars(
            result.epoch,
            train_loss=result.train_loss,
            perplexity=result.perplexity,
            backward_perplexity=result.backward_perplexity,
            learning_rate=result.learning_rate,
            tokens_per_second=result.tokens_per_second,
        )
        if isinstance(self.inner, PretrainEvents):
            self.inner.lm_epoch_end(result)

    def _scalars(self, epoch: int, **values: float | None) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"epoch/{name}", value, epoch)
        self.writer.flush()  # a killed run keeps every finished epoch
