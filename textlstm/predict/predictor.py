"""Prediction: a finished run folder in, labels and probabilities out.

Texts are processed in chunks: each chunk is sorted by length into batches (little padding), run
under ``torch.inference_mode``, and put back in input order, so output order always matches input
order and memory stays flat however long the input is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textlstm import threads
from textlstm.errors import TextLSTMError, param, say
from textlstm.predict.precision import (
    check_precision,
    check_quantize,
    inference_mode,
    quantize_int8,
)
from textlstm.run.decision import Decision

if TYPE_CHECKING:  # torch loads on first use: an ONNX export predicts without it
    import torch

    from textlstm.run.checkpoint import Loaded

CHUNK = 8192


def load_for_inference(
    run_dir: str | Path, device: str, precision: str, quantize: str | None
) -> tuple[Loaded, str, torch.device]:
    """The run loaded and made ready: (loaded, mode, device). int8 runs on the CPU."""
    from textlstm.run.checkpoint import load
    from textlstm.runtime import bf16_support, pick_device

    check_precision(precision)
    if check_quantize(quantize) is not None and device == "cuda":
        raise TextLSTMError(
            f"{param('quantize', 'int8')}: PyTorch's dynamic int8 quantization "
            f"runs on the CPU only; pass {param('device', 'cpu')}"
        )
    target = pick_device("cpu" if quantize is not None and device == "auto" else device)
    loaded = load(run_dir, target)
    trained = loaded.recipe.train.precision
    mode = inference_mode(
        precision, quantize, trained, bf16_support(target), gpu=target.type == "cuda"
    )
    if mode == "int8":
        loaded.model = quantize_int8(loaded.model)
    return loaded, mode, target


@dataclass
class Prediction:
    """``label`` is the top-scoring label and ``score`` its score; ``labels`` are the labels
    given: that one for single-label runs, for multi-label runs every label whose score reaches
    its threshold (highest first; none when no score does)."""

    label: str
    score: float
    scores: dict[str, float]
    labels: list[str] = field(default_factory=list)
    # with a coverage: the prediction set, highest score first (``Decision.sets``)
    set: list[str] | None = None


def predictions(
    labels: list[str],
    decision: Decision,
    probabilities: np.ndarray,
    coverage: float | None = None,
) -> list[Prediction]:
    """Each row of scores (rows, labels) as a Prediction."""
    chosen = decision.chosen(probabilities)
    sets = decision.sets(probabilities, coverage) if coverage is not None else None
    out = []
    for i, (row, picked) in enumerate(zip(probabilities, chosen)):
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        out.append(
            Prediction(
                labels[best],
                float(row[best]),
                {label: float(p) for label, p in zip(labels, row)},
                [labels[k] for k in order if picked[k]],
                None if sets is None else [labels[k] for k in order if sets[i, k]],
            )
        )
    return out


def check_coverage(coverage: float | None, decision: Decision, where: str | Path) -> None:
    """``coverage`` for prediction sets: a share in (0, 1), on a single-label run that kept the
    conformal scores of its validation split; one line naming what to change otherwise."""
    if coverage is None:
        return
    if not 0 < coverage < 1:
        raise TextLSTMError(
            f"{param('coverage', f'{coverage:g}')}: give the share of texts whose set must hold "
            "the true label, between 0 and 1 (exclusive), e.g. 0.9"
        )
    if decision.multi_label:
        raise TextLSTMError(
            f"{where}: {param('coverage')} gives sets with a coverage guarantee for single-label "
            "runs; a multi-label run already gives every label over its threshold (drop it)"
        )
    if not decision.conformal:
        raise TextLSTMError(
            f"{where}: keeps no conformal scores (trained before textlstm kept them, or on its "
            f"validation rows), which {param('coverage')} needs; train it again"
        )


class Predictor:
    """``Predictor.load(run_dir).predict(["a text", ...])`` -> list of Prediction."""

    batch_size = 256  # texts per forward pass when none is given

    def __init__(
        self, loaded: Loaded, mode: str = "fp32", device: torch.device | None = None
    ) -> None:
        self.loaded = loaded
        self.mode = mode  # fp32, bf16 or int8 (an int8 model runs its activations in fp32)
        self.labels: list[str] = loaded.labels
        self.decision: Decision = loaded.decision
        self.coverage: float | None = None  # prediction sets with this coverage (check_coverage)
        self.device = device or next(loaded.model.parameters()).device

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        device: str = "auto",
        precision: str = "auto",
        quantize: str | None = None,
        engine: str = "auto",
    ) -> Predictor:
        """``precision``: auto (as the run was trained), fp32 or bf16; ``quantize="int8"``:
        dynamic int8 quantization (CPU). ``engine``: torch for a run folder, onnxruntime for an
        ONNX export (``textlstm export``); auto picks by the folder."""
        from textlstm.predict.exported import OnnxPredictor, pick

        if pick(run_dir, engine, device, precision, quantize) == "onnxruntime":
            policy = threads.current()  # onnxruntime's own default (0) is every core
            return OnnxPredictor.open(run_dir, policy.threads if policy is not None else 0)
        loaded, mode, target = load_for_inference(run_dir, device, precision, quantize)
        return cls(loaded, mode, target)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        from textlstm.model.classifier import logits_for

        ids = self.loaded.encoder.encode(texts)
        batch = batch_size or self.batch_size
        logits = logits_for(self.loaded.model, ids, batch, self.device, self.mode)
        return self.decision.probabilities(logits)

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[Prediction]:
        return list(self.predict_stream(texts, batch_size))

    def predict_stream(
        self, texts: Iterable[str], batch_size: int | None = None, chunk: int = CHUNK
    ) -> Iterator[Prediction]:
        for block in self.predict_chunks(texts, batch_size, chunk):
            yield from block  # type: ignore[misc]

    def predict_chunks(
        self, items: Iterable[str | BadRecord], batch_size: int | None = None, chunk: int = CHUNK
    ) -> Iterator[list[Prediction | BadRecord]]:
        """Chunks of results in input order; a ``BadRecord`` passes through in its place."""
        iterator = iter(items)
        while block := list(islice(iterator, chunk)):
            threads.follow()  # a long prediction moves its threads as the load changes
            texts = [item for item in block if isinstance(item, str)]
            probs = self.probabilities(texts, batch_size) if texts else None
            done = iter(
                []
                if probs is None
                else predictions(self.labels, self.decision, probs, self.coverage)
            )
            yield [item if isinstance(item, BadRecord) else next(done) for item in block]


@dataclass
class BadRecord:
    """An input record that could not be read (with ``--on-error record`` or ``skip``)."""

    source: str
    line: int
    message: str  # as the library says it; ``raw`` keeps the parameter names for the CLI

    def __post_init__(self) -> None:
        self.message = say(getattr(self.message, "raw", self.message))

    @property
    def raw(self) -> str:
        """``source:line: message``, with the parameter references for ``errors.for_cli``."""
        return f"{self.source}:{self.line}: {getattr(self.message, 'raw', self.message)}"
