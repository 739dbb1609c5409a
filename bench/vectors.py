"""Memory and time of loading pretrained vectors for a vocabulary.

Usage: python bench/vectors.py [VECTORS_FILE] [--words 400000] [--dim 100] [--vocab 30000]

Without a file, writes a GloVe-format stand-in (``--words`` lines of ``--dim`` values, 6 decimals,
the size of glove.6B.100d.txt) into a temporary folder. Then reads the vectors for a
``--vocab``-word vocabulary, half of whose words are in the file, in a fresh process, and reports
the peak resident memory above the process's baseline against the size of the matrix it keeps.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_standin(path: Path, words: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, words, 10_000):
            block = rng.normal(0, 0.4, size=(min(10_000, words - start), dim))
            out.writelines(
                f"w{start + i} " + " ".join(f"{v:.6f}" for v in row) + "\n"
                for i, row in enumerate(block)
            )


def measure(path: str, vocab_size: int) -> None:
    """Runs in a child process so its peak RSS is this load's alone."""
    from textlstm.text.vectors import embedding_matrix, inspect, read_vectors
    from textlstm.text.vocab import PAD, UNK, Vocab

    words = [f"w{i * 2}" for i in range(vocab_size // 2)] + [
        f"x{i}" for i in range(vocab_size // 2)
    ]
    vocab = Vocab([PAD, UNK, *words])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    vf = inspect(Path(path), "bench")
    found, _skipped = read_vectors(vf, set(vocab.tokens), lowercase=True)
    matrix, _mask = embedding_matrix(vocab, found, vf.dim, np.random.default_rng(0))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(
        f"{Path(path).name}: {len(found):,} of {len(vocab) - 2:,} words found in {seconds:.1f}s; "
        f"matrix {matrix.nbytes / 2**20:.1f} MiB; peak RSS above baseline {peak / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", nargs="?")
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=30_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.vocab)
        return
    with tempfile.TemporaryDirectory(prefix="textlstm-bench-vectors-") as folder:
        path = args.file
        if path is None:
            path = str(Path(folder) / f"standin.{args.words // 1000}k.{args.dim}d.txt")
            start = time.perf_counter()
            write_standin(Path(path), args.words, args.dim)
            print(
                f"wrote {path} ({Path(path).stat().st_size / 2**20:.0f} MiB) in "
                f"{time.perf_counter() - start:.0f}s"
            )
        subprocess.run(
            [sys.executable, __file__, "--measure", path, "--vocab", str(args.vocab)], check=True
        )


if __name__ == "__main__":
    main()
