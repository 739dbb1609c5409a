"""Predicting files: texts read from .txt, .csv/.tsv, .jsonl files or stdin, predictions written
as JSON lines, CSV or TSV, one record per input record, in input order.

``predict_files`` is what ``textlstm predict`` runs: every input is checked before anything is
written, a named output file appears only when complete, and a record that cannot be read gets an
error record in its place (``on_error="record"``), is dropped (``"skip"``), or stops the run
(``"fail"``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from textlstm.errors import DataError, param, say
from textlstm.files import atomic_path
from textlstm.predict.predictor import BadRecord, Prediction, Predictor, check_coverage

INPUT_FORMATS = {".txt": "lines", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
ON_ERROR = ("fail", "record", "skip")


def read_inputs(
    path: str, text_column: str = "text", text_key: str = "text", on_error: str = "fail"
) -> Iterator[Any]:
    """Texts from a .txt (one per line), .csv/.tsv (a column), .jsonl (a key) file, or ``-``.

    A record that cannot be read (a broken JSON line, a row with the wrong number of fields)
    raises DataError with ``on_error="fail"``; otherwise it comes out as a ``BadRecord`` in its
    place. Problems with the whole file (missing, empty, binary, no such column) always raise.
    """
    for item in _read(path, text_column, text_key):
        if isinstance(item, BadRecord) and on_error == "fail":
            raise DataError(item.raw)
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
            raise DataError(
                f"{path}: looks like a binary file, not text; give a .txt, .csv, "
                ".tsv or .jsonl file"
            )
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
            yield BadRecord(name, number, f"no key '{key}'; pass {param('text_key')}")
            continue
        value = record[key]
        yield "" if value is None else str(value)


def _table(handle: IO[bytes], name: str, column: str, delimiter: str) -> Iterator[str | BadRecord]:
    # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")
    csv.field_size_limit(2**31 - 1)  # one long document per field is normal here
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or column not in header:
            raise DataError(
                f"{name}: no column '{column}' (columns: {', '.join(header or [])}); "
                f"pass {param('text_column')}"
            )
        index = header.index(column)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                yield BadRecord(
                    name,
                    reader.line_num,
                    f"expected {len(header)} fields, found {len(row)}; fix the quoting on that row",
                )
                continue
            yield row[index]
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: cannot parse this row ({exc})") from None


@dataclass
class FilesPredicted:
    predictions: int  # records predicted
    bad: int  # input records that could not be read (written as error records, or skipped)


def predict_files(
    run_dir: str | Path,
    inputs: Sequence[str] | str | Path,
    output: str | Path | IO[str],
    text_column: str = "text",
    text_key: str = "text",
    top_k: int | None = None,
    batch_size: int | None = None,
    on_error: str = "record",
    device: str = "auto",
    precision: str = "auto",
    quantize: str | None = None,
    wording: Callable[[str], str] = say,
    engine: str = "auto",
    coverage: float | None = None,
) -> FilesPredicted:
    """Classify every text of ``inputs`` (paths, or ``-`` for stdin) into ``output``: a file path
    (its suffix picks JSON lines, CSV or TSV; written under a temporary name and renamed when
    complete) or an open text stream (JSON lines, each chunk flushed whole). ``wording`` turns
    the messages of error records into text (the CLI names its flags). ``coverage``: each record
    also holds the prediction set that contains the true label for that share of texts."""
    if on_error not in ON_ERROR:
        raise DataError(f"{param('on_error', on_error)}: use one of {', '.join(ON_ERROR)}")
    fmt = output_format(output)
    predictor = Predictor.load(run_dir, device, precision, quantize, engine)
    check_coverage(coverage, predictor.decision, run_dir)
    predictor.coverage = coverage
    if isinstance(inputs, (str, Path)):
        inputs = [str(inputs)]
    for name in inputs:  # a bad input file fails here, before anything is written
        if name != "-":
            next(read_inputs(name, text_column, text_key, on_error), None)
    items = (item for name in inputs for item in read_inputs(name, text_column, text_key, on_error))
    if not isinstance(output, (str, Path)):
        return _write_all(predictor, items, output, fmt, top_k, batch_size, on_error, wording)
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        return _write_all(predictor, items, handle, fmt, top_k, batch_size, on_error, wording)


def output_format(output: str | Path | IO[str]) -> str:
    if not isinstance(output, (str, Path)):
        return "jsonl"
    path = Path(output)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give an output file name")
    fmt = OUTPUT_FORMATS.get(path.suffix.lower(), "")
    if not fmt:
        raise DataError(f"{path}: unknown output type; use .jsonl, .csv or .tsv")
    return fmt


def _write_all(
    predictor: Predictor,
    items: Iterator[Any],
    handle: IO[str],
    fmt: str,
    top_k: int | None,
    batch_size: int | None,
    on_error: str,
    wording: Callable[[str], str],
) -> FilesPredicted:
    writer = PredictionWriter(
        handle, fmt, predictor.labels, top_k, on_error == "record", wording,
        multi_label=predictor.decision.multi_label, sets=predictor.coverage is not None,
    )  # fmt: skip
    done = FilesPredicted(0, 0)
    for block in predictor.predict_chunks(items, batch_size):
        for result in block:
            if isinstance(result, BadRecord):
                done.bad += 1
                if on_error == "record":
                    writer.write_error(result)
                continue
            writer.write(result)
            done.predictions += 1
        handle.flush()  # whole records only: an interrupted run leaves a valid prefix
    return done


class PredictionWriter:
    """Writes predictions as JSONL (default), CSV or TSV; ``top_k`` keeps the k likeliest."""

    def __init__(
        self,
        handle: IO[str],
        fmt: str,
        labels: list[str],
        top_k: int | None,
        errors: bool = False,
        wording: Callable[[str], str] = say,
        multi_label: bool = False,
        sets: bool = False,
    ) -> None:
        self.handle, self.fmt, self.top_k, self.errors = handle, fmt, top_k, errors
        self.wording = wording
        self.width = 2 * top_k if top_k else len(labels)
        # a multi-label run's records also list every label given, and with a coverage each
        # record its prediction set (CSV: joined by "|")
        self.multi_label, self.sets = multi_label, sets
        self.csv = None
        if fmt in ("csv", "tsv"):
            self.csv = csv.writer(
                handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n"
            )
            if top_k:
                header = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")]
            else:
                header = [f"p_{label}" for label in labels]
            given = ["labels"] * multi_label + ["set"] * sets
            self.csv.writerow([*given, "label", "score", *header, *(["error"] if errors else [])])

    def write_error(self, bad: BadRecord) -> None:
        """One record in the bad input's place, so output lines still match input records."""
        message = self.wording(bad.raw)
        if self.csv is None:
            self.handle.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
        else:
            lead = [""] * (self.multi_label + self.sets)
            self.csv.writerow([*lead, "", "", *[""] * self.width, message])

    def _given(self, prediction: Prediction) -> list[str]:
        """The CSV cells of the labels given and of the prediction set, as asked for."""
        cells = ["|".join(prediction.labels)] if self.multi_label else []
        return cells + (["|".join(prediction.set or [])] if self.sets else [])

    def write(self, prediction: Prediction) -> None:
        scores = prediction.scores
        if self.top_k:
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])[: self.top_k]
            scores = dict(ranked)
        if self.csv is None:
            record: dict[str, Any] = {
                "label": prediction.label,
                "score": round(prediction.score, 6),
                "scores": {k: round(v, 6) for k, v in scores.items()},
            }
            if self.multi_label:
                record["labels"] = prediction.labels
            if prediction.set is not None:
                record["set"] = prediction.set
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.top_k:
            self.csv.writerow(
                [
                    *self._given(prediction),
                    prediction.label,
                    f"{prediction.score:.6f}",
                    *[x for kv in scores.items() for x in (kv[0], f"{kv[1]:.6f}")],
                    *([""] if self.errors else []),
                ]
            )
        else:
            self.csv.writerow(
                [
                    *self._given(prediction),
                    prediction.label,
                    f"{prediction.score:.6f}",
                    *[f"{v:.6f}" for v in scores.values()],
                    *([""] if self.errors else []),
                ]
            )
