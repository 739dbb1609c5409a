"""The label column: which classes exist, whether a row has one label or several, and the rows
made into ids.

A column of lists (a ``List(ClassLabel)`` feature as on the hub, or lists of names or ids in a
JSON Lines file), or a text column split by ``data.label_separator`` (``"joy|love"`` in a CSV
cell), makes the data multi-label: each row keeps the sorted ids of its labels. Every other
column holds one class per row.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textlstm.data.sources import LARGE_BYTES, column
from textlstm.errors import DataError
from textlstm.recipe import DataConfig
from textlstm.text.encoder import forked


def _feature(ds: Any, name: str) -> tuple[Any, bool]:
    """(the ClassLabel inside the column's feature or None, whether the feature is a list)."""
    import datasets

    feature = ds.features[name]
    listed = isinstance(feature, (datasets.List, datasets.Sequence, datasets.LargeList))
    inner = feature.feature if listed else feature
    return (inner if isinstance(inner, datasets.ClassLabel) else None), listed


def is_multi_label(ds: Any, cfg: DataConfig) -> bool:
    """A column of lists, or a separator to split the column's text by."""
    if cfg.label_separator is not None:
        return True
    _, listed = _feature(ds, cfg.label)
    return listed


def label_names(ds: Any, cfg: DataConfig, source: str, split: str) -> list[str]:
    """Label names from the train split: ClassLabel names, else the sorted distinct values."""
    name = cfg.label
    if name not in ds.column_names:
        raise DataError(
            f"{source}: split '{split}' has no label column '{name}' "
            f"(columns: {', '.join(ds.column_names)}); set data.label"
        )
    own, _ = _feature(ds, name)
    if own is not None:
        return list(own.names)
    multi = is_multi_label(ds, cfg)
    values = column(ds, name)
    if multi:
        values = [item for row in values for item in _items(row, cfg.label_separator) or ()]
    raw = [v for v in values if v is not None and v != -1 and v != ""]
    if any(
        isinstance(v, (list, dict)) or (isinstance(v, float) and not v.is_integer()) for v in raw
    ):
        shape = "a list of class names or ids" if multi else "one class name or integer id"
        raise DataError(
            f"{source}: label column '{name}' must hold {shape} per row "
            "(tables and fractions are not labels)"
        )
    return _sorted_names(set(raw), source, name)


def _sorted_names(values: set[Any], source: str, name: str) -> list[str]:
    numbers = sorted(str(v) for v in values if _is_number(v))
    names = sorted(str(v) for v in values if not _is_number(v))
    if numbers and names:  # e.g. 1 among "pos" and "neg": a data error, not a third class
        raise DataError(
            f"{source}: label column '{name}' mixes numbers and names (e.g. {numbers[0]} and "
            f"{names[0]!r}); make every label a class name or every label an integer id"
        )
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [str(int(v)) for v in sorted(values)]
    return sorted({str(v) for v in values})


def _items(value: Any, separator: str | None) -> list[Any] | None:
    """A multi-label cell as its list of labels; None for a missing cell."""
    if value is None:
        return None
    if isinstance(value, str) and separator is not None:
        return [part.strip() for part in value.split(separator) if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.strip().removeprefix("-").isdigit()


NORMALIZE_CHUNK = 10_000  # rows converted at a time


def normalize(
    ds: Any, cfg: DataConfig, labels: list[str], source: str, split: str, notes: list[str]
) -> Any:
    """Keep two columns: ``text`` (columns joined by a space) and ``label`` (ClassLabel ids, or a
    list of them for multi-label data).

    Rows are converted a chunk at a time; a large split goes to an Arrow file that is
    memory-mapped (as ``datasets`` keeps its own), so memory does not grow with the data."""
    import datasets

    columns = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text)
    missing = [c for c in [*columns, cfg.label] if c not in ds.column_names]
    if missing:
        key = "data.label" if missing == [cfg.label] else "data.text"
        raise DataError(
            f"{source}: split '{split}' has no column '{missing[0]}' "
            f"(columns: {', '.join(ds.column_names)}); set {key}"
        )
    own, _ = _feature(ds, cfg.label)
    multi = is_multi_label(ds, cfg)
    rows = _Rows(own.names if own is not None else None, {n: i for i, n in enumerate(labels)})
    label = datasets.ClassLabel(names=labels)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.List(label) if multi else label}
    )
    picked = ds.select_columns(list(dict.fromkeys([*columns, cfg.label])))
    chunks = (
        _normalized(picked[start : start + NORMALIZE_CHUNK], start, columns, cfg, rows, multi)
        for start in range(0, len(picked), NORMALIZE_CHUNK)
    )
    try:
        if ds.data.nbytes > LARGE_BYTES:  # read and written in a forked process: see _spill
            folder = scratch_folder()  # made here, so that it outlives that process
            path, rows.skipped, rows.unseen = forked(lambda: _spill(chunks, features, folder, rows))
            out = datasets.Dataset.from_file(path)
        else:
            out = _in_memory(chunks, features)
    except _EmptyLabels as exc:
        raise DataError(
            f"{source}: split '{split}' row {exc.row}: an empty label list; every row needs "
            "at least one label (give texts with none a label of their own, e.g. 'none')"
        ) from None
    rows.check(source, split, labels, notes)
    return out


class _EmptyLabels(Exception):
    def __init__(self, row: int) -> None:
        super().__init__(row)  # its args carry it back from a forked process
        self.row = row


def _normalized(
    part: dict[str, list[Any]],
    start: int,
    columns: list[str],
    cfg: DataConfig,
    rows: _Rows,
    multi: bool,
) -> dict[str, list[Any]]:
    """One chunk's rows (``start`` is its first row's index) made into texts and label ids."""
    pieces_of = [part[c] for c in columns]
    texts, ids = [], []
    for i, value in enumerate(part[cfg.label]):
        pieces = [p[i] for p in pieces_of]
        got = rows.many(value, cfg.label_separator) if multi else rows.one(value)
        if got is None or any(p is None for p in pieces):
            rows.skipped += 1
            continue
        if got == []:
            raise _EmptyLabels(start + i + 1)
        if got is not False:
            texts.append(" ".join(str(p) for p in pieces))
            ids.append(got)
    return {"text": texts, "label": ids}


def _in_memory(chunks: Iterator[dict[str, list[Any]]], features: Any) -> Any:
    import datasets

    texts: list[str] = []
    ids: list[Any] = []
    for chunk in chunks:
        texts += chunk["text"]
        ids += chunk["label"]
    return datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features)


def _spill(
    chunks: Iterator[dict[str, list[Any]]], features: Any, folder: Path, rows: _Rows
) -> tuple[str, int, Counter[str]]:
    """The chunks written to a new Arrow file in ``folder``; (its path, and what ``rows``
    counted). Run in a forked process: the source's pages it reads stay out of this one."""
    from datasets.arrow_writer import ArrowWriter

    path = folder / f"rows-{uuid.uuid4().hex}.arrow"
    writer = ArrowWriter(features=features, path=str(path))
    try:
        for chunk in chunks:
            if chunk["text"]:
                writer.write_batch(chunk)
        writer.finalize()
    finally:
        writer.close()
    return str(path), rows.skipped, rows.unseen


_SCRATCH: list[Path] = []


def scratch_folder() -> Path:
    """This process's folder for converted rows, removed when it exits (a file still mapped
    stays readable until then)."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="textlstm-rows-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


class _Rows:
    """Label cells made into ids, counting the skipped rows and the labels training lacks."""

    def __init__(self, own_names: list[str] | None, index: dict[str, int]) -> None:
        self.own_names, self.index = own_names, index
        self.skipped = 0
        self.unseen = Counter[str]()

    def _name(self, value: Any) -> str | None:
        if value is None or value == -1 or value == "":
            return None
        if self.own_names is not None:
            return self.own_names[value]
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else None
        return str(value)

    def one(self, value: Any) -> int | bool | None:
        """The id; None for a missing label, False for one training lacks (counted)."""
        name = self._name(value)
        if name is None:
            return None
        if name not in self.index:
            self.unseen[name] += 1
            return False
        return self.index[name]

    def many(self, value: Any, separator: str | None) -> list[int] | bool | None:
        """The sorted ids ([] for an empty list); None for a missing cell, False when one of
        them is a label training lacks (counted)."""
        items = _items(value, separator)
        if items is None:
            return None
        names = [self._name(item) for item in items]
        if any(n is None for n in names):
            return None
        lacking = [n for n in names if n not in self.index]
        for n in lacking:
            self.unseen[str(n)] += 1
        return False if lacking else sorted({self.index[str(n)] for n in names})

    def check(self, source: str, split: str, labels: list[str], notes: list[str]) -> None:
        if self.unseen:
            shown = ", ".join(repr(n) for n, _ in self.unseen.most_common(5))
            raise DataError(
                f"{source}: split '{split}' has labels not in the training labels: {shown} "
                f"({sum(self.unseen.values())} rows); known labels: {', '.join(labels)}"
            )
        if self.skipped:
            notes.append(f"{split}: skipped {self.skipped} row(s) with a missing text or label")


def label_counter(ds: Any) -> Counter[int]:
    """Rows per label id present (a multi-label row counts once for each of its labels)."""
    counts = Counter[int]()
    for value in column(ds, "label"):
        counts.update(value if isinstance(value, list) else [value])
    return counts


def label_counts(ds: Any, classes: int) -> list[int]:
    """How many rows carry each label id, for every id up to ``classes``."""
    counts = label_counter(ds)
    return [counts.get(i, 0) for i in range(classes)]
