"""Prediction: a finished run folder in, labels and probabilities out.

Texts are processed in chunks: each chunk is sorted by length into batches (little padding), run
under ``torch.inference_mode``, and put back in input order, so output order always matches input
order and memory stays flat however long the input is.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from textlstm.batching import iterate, lengths_of, sorted_batches
from textlstm.errors import DataError, TextLSTMError
from textlstm.model import LSTMClassifier

CHUNK = 8192
INPUT_FORMATS = {".txt": "lines", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}


PRECISIONS = ("auto", "fp32", "bf16")
QUANTIZE = ("int8",)


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TextLSTMError(f"--precision {name}: use one of {', '.join(PRECISIONS)}")
    return name


def check_quantize(name: str | None) -> str | None:
    if name is not None and name not in QUANTIZE:
        raise TextLSTMError(f"--quantize {name}: use {' or '.join(QUANTIZE)}")
    return name


def inference_mode(precision: str, quantize: str | None, trained: str, bf16: str = "native"
                   ) -> str:
    """What a model runs in: ``fp32``, ``bf16`` or ``int8``. ``auto`` is the precision the run
    was trained in (its recipe's ``train.precision``), except that bf16 becomes fp32 where the
    hardware has no native bf16 (``bf16`` is ``runtime.bf16_support``: emulated bf16 is slower
    than fp32, and a CPU without AVX-512 has no bf16 recurrent kernel at all)."""
    check_precision(precision)
    if check_quantize(quantize) is None:
        if precision == "auto":
            return "fp32" if trained == "bf16" and bf16 != "native" else trained
        if precision == "bf16" and bf16 == "none":
            raise TextLSTMError("--precision bf16: this CPU has no bfloat16 kernels for the LSTM "
                                "and GRU (they need AVX-512 or AMX); use --precision fp32 or auto")
        return precision
    if precision == "bf16":
        raise TextLSTMError("--quantize int8 runs int8 weights with fp32 activations; drop "
                            "--precision bf16 (or drop --quantize for bf16)")
    return quantize


def quantize_int8(model: LSTMClassifier) -> LSTMClassifier:
    """PyTorch's dynamic quantization: the LSTM/GRU and linear weights become int8, activations
    are quantized on the fly. CPU only. (``torch.ao.quantization`` warns that it will move to
    torchao; the warning is not the user's to act on, so it is silenced.)"""
    import warnings

    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.cpu().eval(), {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8)


def logits_for(model: LSTMClassifier, ids: Sequence[np.ndarray], batch_size: int,
               device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Logits (rows, num_classes) in input order. ``bf16`` runs the model under bfloat16
    autocast: about 2x the texts/s of fp32 on a CPU with avx512_bf16 (bench/README.md). ``int8``
    is for a model from ``quantize_int8``, whose activations stay fp32."""
    from textlstm.runtime import autocast

    if precision not in ("fp32", "bf16", "int8"):
        raise TextLSTMError(f"precision {precision}: use fp32, bf16 or int8")
    was_training = model.training
    model.eval()
    out = np.zeros((len(ids), model.head.out_features), dtype=np.float32)
    with torch.inference_mode(), autocast(device, precision):
        for rows, tokens, lengths in iterate(ids, sorted_batches(lengths_of(ids), batch_size)):
            out[rows] = model(tokens.to(device), lengths.to(device)).float().cpu().numpy()
    model.train(was_training)
    return out


def load_for_inference(run_dir: str | Path, device: str, precision: str, quantize: str | None):
    """The run loaded and made ready: (loaded, mode, device). int8 runs on the CPU."""
    from textlstm.checkpoint import load
    from textlstm.runtime import bf16_support, pick_device

    check_precision(precision)
    if check_quantize(quantize) is not None and device == "cuda":
        raise TextLSTMError("--quantize int8: PyTorch's dynamic int8 quantization runs on the CPU "
                            "only; pass --device cpu")
    target = pick_device("cpu" if quantize is not None and device == "auto" else device)
    loaded = load(run_dir, target)
    mode = inference_mode(precision, quantize, loaded.recipe.train.precision,
                          bf16_support(target))
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

    def __init__(self, loaded, mode: str = "fp32", device: torch.device | None = None) -> None:
        self.loaded = loaded
        self.mode = mode  # fp32, bf16 or int8 (an int8 model runs its activations in fp32)
        self.labels: list[str] = loaded.labels
        self.device = device or next(loaded.model.parameters()).device

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", precision: str = "auto",
             quantize: str | None = None) -> "Predictor":
        """``precision``: auto (as the run was trained), fp32 or bf16; ``quantize="int8"``:
        dynamic int8 quantization (CPU)."""
        loaded, mode, target = load_for_inference(run_dir, device, precision, quantize)
        return cls(loaded, mode, target)

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        ids = self.loaded.encoder.encode(texts)
        logits = logits_for(self.loaded.model, ids, batch_size, self.device, self.mode)
        return torch.from_numpy(logits).softmax(dim=1).numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[Prediction]:
        return list(self.predict_stream(texts, batch_size))

    def predict_stream(self, texts: Iterable[str], batch_size: int = 256,
                       chunk: int = CHUNK) -> Iterator[Prediction]:
        for block in self.predict_chunks(texts, batch_size, chunk):
            yield from block  # type: ignore[misc]

    def predict_chunks(self, items: Iterable[str | BadRecord], batch_size: int = 256,
                       chunk: int = CHUNK) -> Iterator[list[Prediction | BadRecord]]:
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
                out.append(Prediction(self.labels[index], float(row[index]),
                                      {label: float(p) for label, p in zip(self.labels, row)}))
            yield out


@dataclass
class BadRecord:
    """An input record that could not be read (with ``--on-error record`` or ``skip``)."""
    source: str
    line: int
    message: str


# --- input and output files --------------------------------------------------------------------

ON_ERROR = ("fail", "record", "skip")


def read_inputs(path: str, text_column: str = "text", text_key: str = "text",
                on_error: str = "fail") -> Iterator[Any]:
    """Texts from a .txt (one per line), .csv/.tsv (a column), .jsonl (a key) file, or ``-``.

    A record that cannot be read (a broken JSON line, a row with the wrong number of fields)
    raises DataError with ``on_error="fail"``; otherwise it comes out as a ``BadRecord`` in its
    place. Problems with the whole file (missing, empty, binary, no such column) always raise.
    """
    for item in _read(path, text_column, text_key):
        if isinstance(item, BadRecord) and on_error == "fail":
            raise DataError(f"{item.source}:{item.line}: {item.message}")
        yield item


def _read(path: str, text_column: str, text_key: str) -> Iterator[Any]:
    if path == "-":
        yield from _lines(sys.stdin.buffer, "<stdin>")
        return
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{path}: is a folder; give a .txt, .csv, .tsv or .jsonl file")
    if not file.is_file():
        raise DataError(f"{path}: input file not found")
    if file.stat().st_size == 0:
        raise DataError(f"{path}: the input file is empty")
    with open(file, "rb") as handle:
        if b"\x00" in handle.read(8192):
            raise DataError(f"{path}: looks like a binary file, not text; give a .txt, .csv, "
                            ".tsv or .jsonl file")
    kind = INPUT_FORMATS.get(file.suffix.lower(), "lines")
    with open(file, "rb") as handle:
        if kind == "lines":
            yield from _lines(handle, path)
        elif kind == "jsonl":
            yield from _jsonl(handle, path, text_key)
        else:
            yield from _table(handle, path, text_column, "\t" if kind == "tsv" else ",")


def _lines(handle: IO[bytes], name: str) -> Iterator[str]:
    for raw in handle:
        yield raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")


def _jsonl(handle: IO[bytes], name: str, key: str) -> Iterator[str | BadRecord]:
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            yield BadRecord(name, number, f"not valid JSON ({exc.msg}); fix or remove that line")
            continue
        if not isinstance(record, dict) or key not in record:
            yield BadRecord(name, number, f"no key '{key}'; pass --text-key")
            continue
        value = record[key]
        yield "" if value is None else str(value)


def _table(handle: IO[bytes], name: str, column: str, delimiter: str
           ) -> Iterator[str | BadRecord]:
    # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")
    csv.field_size_limit(2**31 - 1)  # one long document per field is normal here
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or column not in header:
            raise DataError(f"{name}: no column '{column}' (columns: {', '.join(header or [])}); "
                            "pass --text-column")
        index = header.index(column)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                yield BadRecord(name, reader.line_num, f"expected {len(header)} fields, found "
                                f"{len(row)}; fix the quoting on that row")
                continue
            yield row[index]
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: cannot parse this row ({exc})") from None


class PredictionWriter:
    """Writes predictions as JSONL (default), CSV or TSV; ``top_k`` keeps the k likeliest."""

    def __init__(self, handle: IO[str], fmt: str, labels: list[str], top_k: int | None,
                 errors: bool = False) -> None:
        self.handle, self.fmt, self.top_k, self.errors = handle, fmt, top_k, errors
        self.width = 2 * top_k if top_k else len(labels)
        self.csv = None
        if fmt in ("csv", "tsv"):
            self.csv = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",",
                                  lineterminator="\n")
            if top_k:
                header = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")]
            else:
                header = [f"p_{label}" for label in labels]
            self.csv.writerow(["label", "score", *header, *(["error"] if errors else [])])

    def write_error(self, bad: BadRecord) -> None:
        """One record in the bad input's place, so output lines still match input records."""
        message = f"{bad.source}:{bad.line}: {bad.message}"
        if self.csv is None:
            self.handle.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
        else:
            self.csv.writerow(["", "", *[""] * self.width, message])

    def write(self, prediction: Prediction) -> None:
        scores = prediction.scores
        if self.top_k:
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])[: self.top_k]
            scores = dict(ranked)
        if self.csv is None:
            record = {"label": prediction.label, "score": round(prediction.score, 6),
                      "scores": {k: round(v, 6) for k, v in scores.items()}}
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.top_k:
            self.csv.writerow([prediction.label, f"{prediction.score:.6f}",
                               *[x for kv in scores.items() for x in (kv[0], f"{kv[1]:.6f}")],
                               *([""] if self.errors else [])])
        else:
            self.csv.writerow([prediction.label, f"{prediction.score:.6f}",
                               *[f"{v:.6f}" for v in scores.values()],
                               *([""] if self.errors else [])])
