"""What ``textlstm check`` reports about a recipe's data, without training."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textlstm.data import column, load_splits
from textlstm.recipe import Recipe
from textlstm.tokenize import build_tokenizer

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class SplitSummary:
    name: str
    rows: int
    label_counts: dict[str, int]
    length_percentiles: dict[int, int]  # tokens before truncation
    truncated_share: float  # share of texts longer than tokenizer.max_length


@dataclass
class DataSummary:
    source: str
    labels: list[str]
    splits: list[SplitSummary]
    notes: list[str] = field(default_factory=list)


def summarize(recipe: Recipe, data_dir: str | Path | None = None) -> DataSummary:
    base = Path(recipe.source).parent if recipe.source else None
    splits = load_splits(recipe.data, data_dir, recipe.seed, base)
    untruncated = build_tokenizer(recipe.tokenizer.model_copy(update={"max_length": 10**9}))
    limit = recipe.tokenizer.max_length
    out = []
    for name in splits.names:
        ds = splits[name]
        lengths = np.fromiter((len(t) for t in untruncated.batch(column(ds, "text"))), dtype=np.int64)
        counts = Counter(column(ds, "label"))
        out.append(SplitSummary(
            name, len(ds), {label: counts.get(i, 0) for i, label in enumerate(splits.labels)},
            {p: int(np.percentile(lengths, p)) for p in PERCENTILES},
            float((lengths > limit).mean())))
    return DataSummary(splits.source, splits.labels, out, splits.notes)
