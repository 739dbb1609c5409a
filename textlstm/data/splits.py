"""Datasets in, clean splits out: every source becomes a DatasetDict with a string ``text`` column
and a ClassLabel ``label`` column, split into train / validation / test.

Where the raw data comes from is ``textlstm.data.sources``'s job.

Policies, stated once: text files and data-file lines that are not valid UTF-8 are decoded with
replacement characters and counted; rows whose text or label is missing are skipped and
counted; labels of -1 (hidden test labels on the hub) count as missing; a split left without
labelled rows is dropped, with a note; a label column that mixes numbers and names (``1`` among
``pos`` and ``neg``) is an error, since the odd one out is a data mistake, not a class.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.data.labels import is_multi_label, label_counter, label_names, normalize
from textlstm.data.sources import column, data_root, load_raw, texts_of
from textlstm.errors import DataError
from textlstm.recipe import DataConfig
from textlstm.text.encoder import apart

__all__ = ["Splits", "column", "data_root", "label_names", "load_raw", "load_splits", "normalize"]


@dataclass
class Splits:
    """Labelled splits ready for tokenizing. ``labels[i]`` is the name of label id ``i``."""

    datasets: Any  # DatasetDict: text (string) and label (ClassLabel, or a List of them)
    labels: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    local_path: str | None = None  # absolute path when data.dataset named a local file or folder
    multi_label: bool = False  # each row's label is a list of ids

    def __getitem__(self, split: str) -> Any:
        return self.datasets[split]

    @property
    def names(self) -> list[str]:
        return list(self.datasets.keys())

    def fingerprint(self) -> str:
        """A hash of every split's texts and labels; for a large split (a lazy column) read in a
        forked process, so that its pages stay out of this one's memory."""
        return apart(self._digest, texts_of(self[self.names[0]]))

    def _digest(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for split in self.names:
            digest.update(split.encode())
            for text, label in zip(texts_of(self[split]), column(self[split], "label")):
                digest.update(text.encode("utf-8", "replace"))
                for one in label if isinstance(label, list) else [label]:
                    digest.update(b"\x00%d" % one)
                digest.update(b"\x00")
        return digest.hexdigest()


def load_splits(
    cfg: DataConfig,
    data_dir: str | Path | None = None,
    seed: int = 13,
    base: str | Path | None = None,
) -> Splits:
    """Load ``cfg.dataset`` and return train / validation (/ test) splits with integer labels.

    ``base`` is the folder relative dataset paths are resolved against (the recipe's folder)."""
    raw, source, notes, local_path = load_raw(cfg.dataset, cfg.config, data_dir, base)
    parts = cfg.train_split.split("+")  # "train+validation": the splits joined, as on the hub
    for part in parts:
        if part not in raw:
            raise DataError(
                f"{source}: no '{part}' split (found: {', '.join(raw)}); set data.train_split"
            )
    if len(parts) > 1:
        import datasets

        try:
            raw[cfg.train_split] = datasets.concatenate_datasets([raw[p] for p in parts])
        except ValueError as exc:
            raise DataError(
                f"{source}: cannot join the splits {' + '.join(parts)} "
                f"({str(exc).splitlines()[0]}); set data.train_split to one split"
            ) from None
        if cfg.validation_split in parts:
            notes.append(
                f"the {cfg.validation_split} rows are also training rows here: its "
                "scores are not held out"
            )
    wanted = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    picked = {role: raw[name] for role, name in wanted.items() if name in raw}
    labels = label_names(picked["train"], cfg, source, cfg.train_split)
    multi = is_multi_label(picked["train"], cfg)
    cleaned = {}
    for role, ds in picked.items():
        ds = normalize(ds, cfg, labels, source, wanted[role], notes)
        if len(ds) == 0 and role != "train":
            notes.append(f"{wanted[role]} split has no labelled rows; it is left out")
            continue
        cleaned[role] = ds
    splits = finish_splits(cleaned, labels, source, notes, cfg, seed, multi)
    splits.local_path = local_path
    return splits


def finish_splits(
    splits: dict[str, Any],
    labels: list[str],
    source: str,
    notes: list[str],
    cfg: DataConfig,
    seed: int,
    multi: bool = False,
) -> Splits:
    import datasets

    train = splits["train"]
    _check_classes(train, labels, source)
    total = len(train)
    how = "at random" if multi else "stratified"
    carve = _carve if cfg.carve == "rows" else _carve_sentences
    if cfg.folds:
        if "test" in splits:
            notes.append("the data set's own test split is left out: the folds give the test split")
        train, splits["test"] = _fold(train, cfg.folds, cfg.fold, seed, source)
        notes.append(
            f"test split: fold {cfg.fold} of {cfg.folds}, {len(splits['test'])} rows "
            f"({how}, seed {seed})"
        )
    elif "test" not in splits and cfg.test_fraction > 0:
        train, splits["test"], (unit, extra) = carve(train, cfg.test_fraction, seed, source, "test")
        notes.append(
            f"test split carved from train: {len(splits['test'])} {unit} "
            f"({cfg.test_fraction:.0%}, {how}, seed {seed}){extra}"
        )
    if "validation" not in splits:
        # both fractions are shares of the original train split
        share = cfg.validation_fraction * total / len(train)
        train, splits["validation"], (unit, extra) = carve(train, share, seed, source, "validation")
        notes.append(
            f"validation split carved from train: {len(splits['validation'])} {unit} "
            f"({cfg.validation_fraction:.0%}, {how}, seed {seed}){extra}"
        )
    if cfg.train_on_validation:
        train = datasets.concatenate_datasets([train, splits["validation"]])
        notes.append(
            f"the {len(splits['validation'])} validation rows are also training rows here: "
            "its scores are not held out"
        )
    if len(label_counter(train)) < 2:
        raise DataError(
            f"{source}: after carving validation/test splits the train split has a "
            "single class; add data or lower data.validation_fraction/test_fraction"
        )
    splits["train"] = train
    order = [name for name in ("train", "validation", "test") if name in splits]
    return Splits(
        datasets.DatasetDict({name: splits[name] for name in order}),
        labels,
        source,
        notes,
        multi_label=multi,
    )


def _check_classes(train: Any, labels: list[str], source: str) -> None:
    if len(train) == 0:
        raise DataError(f"{source}: the train split has no labelled rows")
    counts = label_counter(train)
    if len(counts) < 2:
        raise DataError(
            f"{source}: the train split has a single class ({labels[next(iter(counts))]!r}); "
            "a classifier needs at least two"
        )


def _strata(ds: Any) -> list[Any]:
    """What a carve or a fold stratifies by: the label, or a multi-label row's first label."""
    return [value[0] if isinstance(value, list) else value for value in column(ds, "label")]


def _fold(train: Any, folds: int, fold: int, seed: int, source: str) -> tuple[Any, Any]:
    """The rows outside and inside fold ``fold`` (1-based) of ``folds`` stratified, seeded
    folds: every row is in exactly one fold's test split."""
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(_strata(train))
    if len(labels) < folds:
        raise DataError(
            f"{source}: {len(labels)} training rows cannot make {folds} folds; lower data.folds"
        )
    with warnings.catch_warnings():  # a class rarer than the folds: some folds go without it
        warnings.simplefilter("ignore", UserWarning)
        parts = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))
    rest, held = parts[fold - 1]
    return train.select(rest), train.select(held)


def _carve(
    train: Any, fraction: float, seed: int, source: str, role: str
) -> tuple[Any, Any, tuple[str, str]]:
    """``fraction`` of the rows at random, stratified by label and seeded; the third item is
    the unit carved and anything more to say about it."""
    labels = column(train, "label") if _single(train) else []
    counts = Counter(labels)
    try:
        if counts and min(counts.values()) >= 2 and len(train) * fraction >= len(counts):
            held, rest = stratified_rows(np.asarray(labels), fraction, seed)
            return train.select(rest), train.select(held), ("rows", "")
        parts = train.train_test_split(test_size=fraction, seed=seed)
    except ValueError as exc:
        raise DataError(
            f"{source}: cannot carve a {role} split from {len(train)} training rows "
            f"({exc}); add more data or a {role} split"
        ) from None
    return parts["train"], parts["test"], ("rows", "")


def stratified_rows(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(held-out rows, the rest): the rows ``train_test_split(test_size=fraction, seed=seed,
    stratify_by_column="label")`` of ``datasets`` picks, from labels read at once (it reads
    them row by row: 69 s for 250,000 rows)."""
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    held = math.ceil(fraction * len(labels))
    if held >= len(labels):
        raise ValueError(f"test_size={fraction} leaves no training rows")
    rng = np.random.default_rng(seed)
    rest, chosen = next(
        stratified_shuffle_split_generate_indices(labels, len(labels) - held, held, rng=rng)
    )
    return chosen, rest


def _single(ds: Any) -> bool:
    import datasets

    return isinstance(ds.features["label"], datasets.ClassLabel)


def _spans(words: tuple[str, ...]) -> set[tuple[str, ...]]:
    n = len(words)
    return {words[a:b] for a in range(n) for b in range(a + 1, n + 1)}


def _words(texts: list[str]) -> list[tuple[str, ...]]:
    """Each text's words as phrase matching sees them: lowercased, split on whitespace."""
    return [tuple(t.lower().split()) for t in texts]


def _sentences(words: list[tuple[str, ...]]) -> list[int]:
    """The rows whose words are no longer row's span (nor an earlier equal row's)."""
    sentences, covered = [], set()
    for i in sorted(range(len(words)), key=lambda i: (-len(words[i]), i)):
        if words[i] and words[i] not in covered:
            sentences.append(i)
            covered |= _spans(words[i])
    return sentences


PHRASE_SCAN_WORDS = 80  # phrase_share looks no further: a long text's spans are too many


def phrase_share(texts: list[str]) -> float:
    """The share of ``texts`` that are a span of a longer one, as in SST's train split, which
    lists the phrases of its sentences; 0.0 when a text is longer than PHRASE_SCAN_WORDS."""
    words = _words(texts)
    if not words or max(len(w) for w in words) > PHRASE_SCAN_WORDS:
        return 0.0
    return 1.0 - len(_sentences(words)) / len(words)


def _carve_sentences(
    train: Any, fraction: float, seed: int, source: str, role: str
) -> tuple[Any, Any, tuple[str, str]]:
    """Carve whole sentences from a train split that also lists their phrases (SST): a sentence
    is a row whose words are no longer row's span; ``fraction`` of the sentences (stratified by
    label, seeded) are carved, and a phrase found inside carved sentences but in no kept one
    leaves training, so no part of a carved sentence is trained on that the split's own test
    sentences would not share too. Words are the lowercased text split on whitespace."""
    import numpy as np

    words = _words(column(train, "text"))
    labels = _strata(train)
    sentences = _sentences(words)
    rng = np.random.default_rng(seed)
    carved: list[int] = []
    for label in sorted({labels[i] for i in sentences}):
        group = sorted(i for i in sentences if labels[i] == label)
        take = round(len(group) * fraction)
        carved.extend(rng.choice(group, size=min(take, len(group) - 1), replace=False).tolist())
    carved_set = set(carved)
    if not carved or len(carved_set) == len(sentences):
        raise DataError(
            f"{source}: cannot carve a {role} split of whole sentences from "
            f"{len(sentences)} sentence(s); add more data, a {role} split, or set "
            'data.carve = "rows"'
        )
    inside_carved = set().union(*(_spans(words[i]) for i in carved))
    inside_kept = set().union(*(_spans(words[i]) for i in sentences if i not in carved_set))
    only_carved = inside_carved - inside_kept
    kept = [i for i in range(len(words)) if words[i] not in only_carved]
    phrases = len(words) - len(kept) - len(carved)
    extra = f"; {phrases:,} phrase(s) found only in them left out of training"
    return train.select(kept), train.select(sorted(carved)), ("sentences", extra)
