"""Tiny stand-ins for the IMDB and SST-2 mirrors, in their hub layout and columns, so that a bench
script's every step can be run end to end in seconds (bench/gpu.sh --dry-run uses it). The texts
are generated: the figures they give mean nothing.

Usage: python bench/tiny_mirror.py OUT [--rows 96]
Writes OUT/stanfordnlp/imdb/plain_text/{train,test}-00000-of-00001.parquet (text,
label) and OUT/stanfordnlp/sst2/data/{train,validation}-00000-of-00001.parquet (idx,
sentence, label; as in ../shared/datasets, whose SST-2 has no test split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = {
    0: "dull boring awful waste weak bland tedious mess",
    1: "great moving superb fine charming brilliant fun gem",
}
FILLER = ["the", "film", "a", "story", "and", "its", "cast", "with", "this", "one", "plot"]


def texts(rows: int, seed: int, length: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    labels = [int(x) for x in rng.permutation(np.arange(rows) % 2)]  # balanced, in no order
    out = []
    for label in labels:
        cue = WORDS[label].split()
        words = rng.choice(FILLER + cue, size=int(rng.integers(length // 2, length)))
        out.append(" ".join(words))
    return out, labels


def write(path: Path, columns: dict[str, list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=96)
    args = parser.parse_args()
    imdb = args.out / "stanfordnlp" / "imdb" / "plain_text"
    for seed, split in enumerate(("train", "test")):
        text, label = texts(args.rows, seed, 120)
        write(imdb / f"{split}-00000-of-00001.parquet", {"text": text, "label": label})
    sst2 = args.out / "stanfordnlp" / "sst2" / "data"
    for seed, split in enumerate(("train", "validation"), start=10):
        text, label = texts(args.rows, seed, 20)
        columns = {"idx": list(range(len(text))), "sentence": text, "label": label}
        write(sst2 / f"{split}-00000-of-00001.parquet", columns)


if __name__ == "__main__":
    main()
