"""Training speed of variants of the toolkit against each other, interleaved in one run: git
revisions (each checked out in a worktree of its own) and recipe overrides, on `speed.py`'s IMDB
model (its shape, one epoch). For changes too small to show across separate runs on a shared
machine: each pair of runs is taken back to back, in a shuffled order, and the table gives each
variant's median and its ratio to the first variant's in every pair.

Usage: python bench/train_ab.py DATA --variant NAME REV [OVERRIDE ...] --variant ...
                                [--rows 8000] [--pairs 4] [--precision bf16] [--seed 0]
DATA holds stanfordnlp/imdb. REV is a git revision of this repository, or `.` for the working
tree as it is; OVERRIDEs are recipe keys (`model.embedding_dropout=0`). Example:
  python bench/train_ab.py /work/data --variant now . --variant before HEAD~1
A figure is the epoch's training tokens/s from `metrics.jsonl` (the epoch alone: not model.wide's
fit, which is skipped, nor validation). Nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from speed import shaped_recipe, write_subset

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
from pathlib import Path
import textlstm
import textlstm.training.trainer as trainer
if hasattr(trainer, "fit_wide"):
    trainer.fit_wide = lambda *args, **kwargs: 0.0  # not part of the epoch's time
recipe = textlstm.load_recipe({recipe!r}, {overrides!r})
textlstm.train(recipe, out_dir={out!r}, device="cpu")
run = next(Path({out!r}).glob("*/2*"))
first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
print("AB " + json.dumps({{"tokens_per_second": first["tokens_per_second"]}}))
"""


def checkout(rev: str, work: Path, trees: dict[str, Path]) -> Path:
    """The folder whose textlstm a variant runs: the working tree for `.`, else a worktree."""
    if rev == ".":
        return ROOT
    if rev not in trees:
        folder = work / f"tree-{len(trees)}"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev],
            check=True,
            capture_output=True,
        )
        trees[rev] = folder
    return trees[rev]


def train_once(tree: Path, recipe: Path, overrides: list[str], out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = CHILD.format(recipe=str(recipe), overrides=overrides, out=str(out))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tree
    )
    shutil.rmtree(out, ignore_errors=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("AB ")), None)
    if line is None:
        sys.exit(f"a training failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(json.loads(line[3:])["tokens_per_second"])


def report(names: list[str], figures: dict[str, list[float]]) -> None:
    first = names[0]
    print(f"\n| variant | median tokens/s | vs {first} (median of pairs) | per pair | faster in |")
    print("|---|---|---|---|---|")
    for name in names:
        ratios = [a / b for a, b in zip(figures[name], figures[first])]
        wins = sum(r > 1 for r in ratios)
        print(
            f"| {name} | {statistics.median(figures[name]):,.0f} | "
            f"{statistics.median(ratios):.2f}x | {', '.join(f'{r:.2f}' for r in ratios)} | "
            f"{wins} of {len(ratios)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--variant", nargs="+", action="append", required=True)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.variant) < 2 or any(len(v) < 2 for v in args.variant):
        sys.exit("give two variants or more, each as --variant NAME REV [OVERRIDE ...]")
    names = [v[0] for v in args.variant]
    work = Path(tempfile.mkdtemp(prefix="textlstm-ab-"))
    trees: dict[str, Path] = {}
    try:
        data, _, _ = write_subset(args.data, work / "data", args.rows)
        _, recipe = shaped_recipe(work)
        common = [f'data.dataset="{data}"', "train.epochs=1", f'train.precision="{args.precision}"']
        runs = {v[0]: (checkout(v[1], work, trees), [*common, *v[2:]]) for v in args.variant}
        figures: dict[str, list[float]] = {name: [] for name in names}
        rng = np.random.default_rng(args.seed)
        for pair in range(args.pairs):
            for i in rng.permutation(len(names)):
                tree, overrides = runs[names[i]]
                figures[names[i]].append(train_once(tree, recipe, overrides, work / "runs"))
            print(f"pair {pair + 1}: " + ", ".join(f"{n} {figures[n][-1]:,.0f}" for n in names))
        report(names, figures)
    finally:
        for folder in trees.values():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
