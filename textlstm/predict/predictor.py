"""Prediction: a finished run folder in, labels and probabilities out.

Texts are processed in chunks: each chunk is sorted by length into batches (little padding), run
under ``torch.inference_mode``, and put back in input order, so output order always matches input
order and memory stays flat however long the input is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textlstm.errors import TextLSTMError, param, say
from textlstm.predict.precision import (
    check_precision,
    check_quantize,
    inference_mode,
    quantize_int8,
)

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
    label: str
    score: float
    scores: dict[str, float]


class Predictor:
    """``Predictor.load(run_dir).predict(["a text", ...])`` -> list of Prediction."""

    batch_size = 256  # texts per forward pass when none is given

    def __init__(
        self, loaded: Loaded, mode: str = "fp32", device: torch.device | None = None
    ) -> None:
        self.loaded = loaded
        self.mode = mode  # fp32, bf16 or int8 (an int8 model runs its activations in fp32)
        self.labels: list[str] = loaded.labels
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
            return OnnxPredictor.open(run_dir)
        loaded, mode, target = load_for_inference(run_dir, device, precision, quantize)
        return cls(loaded, mode, target)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        from textlstm.model.classifier import logits_for

        ids = self.loaded.encoder.encode(texts)
        batch = batch_size or self.batch_size
        logits = logits_for(self.loaded.model, ids, batch, self.device, self.mode)
        return torch.from_numpy(logits).softmax(dim=1).numpy()

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
            texts = [item for item in block if isinstance(item, str)]
            probs = self.probabilities(texts, batch_size) if texts else None
            best = probs.argmax(axis=1) if probs is not None else None
            out: list[Prediction | BadRecord] = []
            position = 0
            for item in block:
                if isinstance(item, BadRecord):
                    out.append(item)
                    continue
                row, index = probs[position], best[position]  # type: ignore[index]
                position += 1
                out.append(
                    Prediction(
                        self.labels[index],
                        float(row[index]),
                        {label: float(p) for label, p in zip(self.labels, row)},
                    )
                )
            yield out


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
