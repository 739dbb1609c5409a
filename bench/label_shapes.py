"""Every label shape, measured: multi-label GoEmotions, TREC's 50 long-tailed fine labels with and
without class weights, calibrated scores and split conformal prediction sets, each against its
reference in the same run.

Usage: python bench/label_shapes.py DATA_ROOT [--imdb ROOT] [--only goemotions,init,...] [--out DIR]
       [--trec-seeds 13,14,15,16,17] [--trec-weights none,balanced] [--coverage-seeds 13]
DATA_ROOT holds the development suite (../shared/datasets); --imdb a root holding
stanfordnlp/imdb (default DATA_ROOT; its calibration row is skipped without it).

Each step runs the CLI as a user would, one command at a time (so nothing else shares the two
cores with a training), and reads the numbers back from the files the commands write:
- goemotions: recipes/go_emotions.toml trained (wall time of `textlstm train`), then `textlstm
  evaluate --baseline`: test micro- and macro-F1 against the one-vs-rest TF-IDF + LR baseline with
  per-label thresholds, fitted in the same command;
- init: `textlstm init` on GoEmotions, trained and evaluated the same way;
- trec50: `textlstm init` on TREC with --label fine_label, trained with train.class_weights
  "none" and "balanced" (init's choice for skewed classes; --trec-weights adds "sqrt"), each
  with every seed of --trec-seeds (default 13-17): the means, and each seed's figures;
- coverage: init's recipe on SST-5, TREC-6, CR and ChnSentiCorp (each seed of
  --coverage-seeds), evaluated at --coverage 0.9: the share of test texts whose prediction set
  holds the true label, and the sets' mean size; beside it a control that chooses nothing on
  the validation rows (TF-IDF + LR, C = 1, its sets calibrated on the same rows), and the
  chance that any sets, calibrated on that many validation rows, cover a share of that many
  test texts inside [0.88, 0.93] when all are exchangeable (beta-binomial);
- calibration: the test split's expected calibration error before and after the temperature,
  for the bundled SST-2 and IMDB recipes and the GoEmotions run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("goemotions", "init", "trec50", "coverage", "calibration")
COVERAGE_SETS = {"sst5": "local/sst5", "trec6": "CogComp/trec", "cr": "local/cr",
                 "chnsenticorp": "local/chnsenticorp"}  # fmt: skip


def textlstm(*argv: str, cwd: Path) -> float:
    """Run one command; returns its wall seconds. A failure stops the bench with its output."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "textlstm", *argv], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"textlstm {' '.join(argv)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - began


def train_and_evaluate(
    recipe: Path, work: Path, data: str, more: tuple[str, ...] = (), baseline: bool = True
) -> tuple[dict, float, Path]:
    """(the test split's eval JSON, training wall seconds, the run folder)."""
    runs = work / "runs"
    before = set(runs.glob("*/2*")) if runs.exists() else set()
    wall = textlstm("train", str(recipe), "--out", str(runs), "--data-dir", data, *more, cwd=work)
    (run,) = [p for p in runs.glob("*/2*") if p not in before and p.is_dir()]
    textlstm("evaluate", str(run), *(["--baseline"] if baseline else []), cwd=work)
    return json.loads((run / "eval-test.json").read_text()), wall, run


def init_recipe(dataset: str, data: str, work: Path, name: str, *more: str) -> Path:
    out = work / f"{name}.toml"
    textlstm("init", f"{data}/{dataset}", "-o", str(out), "--force", *more, cwd=work)
    return out


def f1s(report: dict) -> str:
    return f"micro-F1 {report['micro_f1']:.4f}, macro-F1 {report['macro_f1']:.4f}"


def goemotions(data: str, work: Path, recipe: Path, label: str) -> dict:
    evaluated, wall, _ = train_and_evaluate(recipe, work, data)
    base = evaluated["baseline"]
    print(
        f"| {label} | {f1s(evaluated)} | {f1s(base)} | "
        f"{100 * (evaluated['macro_f1'] - base['macro_f1']):+.2f} | {wall / 60:.1f} min |",
        flush=True,
    )
    return evaluated


def trec50(data: str, work: Path, seeds: list[int], variants: list[str]) -> None:
    """TREC's fine labels, each variant trained with every seed (a seed draws the validation
    rows, the initial weights and the batches: on 500 test texts and 50 labels one run's
    macro-F1 moves by a few points from seed to seed); the mean and each seed's figures."""
    recipe = init_recipe("CogComp/trec", data, work, "trec50", "--label", "fine_label")
    for variant in variants:
        rows = []
        for seed in seeds:
            more = ("--set", f"seed={seed}", "--set", f'train.class_weights="{variant}"')
            evaluated, wall, _ = train_and_evaluate(recipe, work, data, more, baseline=False)
            rows.append((evaluated["accuracy"], evaluated["macro_f1"], wall))
            print(f"  {variant}, seed {seed}: {rows[-1][0]:.2%}, {rows[-1][1]:.4f}", flush=True)
        accuracy, macro, wall = (sum(r[i] for r in rows) / len(rows) for i in range(3))
        each = ", ".join(f"{r[0]:.1%}/{r[1]:.3f}" for r in rows)
        print(
            f"| TREC-50, class_weights = {variant} | {accuracy:.2%} | {macro:.4f} | {each} | "
            f"{wall:.0f} s |",
            flush=True,
        )


def band_chance(n: int, m: int, coverage: float = 0.9, band: tuple = (0.88, 0.93)) -> float:
    """The chance that split conformal sets calibrated on n rows cover a share of m test texts
    inside ``band``, when all n + m are exchangeable: whatever the model and its scores, the
    coverage given the n rows is Beta(k, n + 1 - k) with k = ceil((n + 1) * coverage) (Vovk
    2012), and the m texts' hits are binomial given it, so the hits are beta-binomial
    (``coverage_law``). What any data set of these sizes can promise about the band."""
    import numpy as np

    from textlstm.evaluation.evaluate import coverage_law

    hits = np.arange(m + 1)
    share = hits / m
    inside = (share >= band[0] - 1e-12) & (share <= band[1] + 1e-12)
    return float(coverage_law(n, m, coverage).pmf(hits)[inside].sum())


def linear_sets(recipe: Path, data: str, seed: int) -> tuple[float, float, float]:
    """The control: TF-IDF 1-2 grams + logistic regression (C = 1, nothing chosen on
    validation) on the run's own splits, its split conformal sets at 0.9 calibrated on the
    run's validation rows; (test accuracy, test coverage, ``band_chance`` of the splits'
    sizes). What it misses is the test split's doing, not the network's selection of its
    epoch on those rows."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from textlstm.data import load_splits
    from textlstm.data.sources import column
    from textlstm.recipe import load_recipe
    from textlstm.run.decision import Decision, conformal_scores

    loaded = load_recipe(recipe)
    splits = load_splits(loaded.data, data, seed, base=recipe.parent)
    texts = {n: column(splits[n], "text") for n in ("train", "validation", "test")}
    truth = {n: np.asarray(column(splits[n], "label")) for n in texts}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts["train"])
    model = LogisticRegression(C=1.0, max_iter=3000)
    model.fit(vectorizer.transform(texts["train"]), truth["train"])
    scores = {n: model.predict_proba(vectorizer.transform(texts[n])) for n in texts}
    decision = Decision(
        False, (), (1.0,), conformal_scores(scores["validation"], truth["validation"])
    )
    sets = decision.sets(scores["test"], 0.9)
    covered = sets[np.arange(len(truth["test"])), truth["test"]].mean()
    accuracy = float((scores["test"].argmax(1) == truth["test"]).mean())
    return accuracy, float(covered), band_chance(len(truth["validation"]), len(truth["test"]))


def coverage(data: str, work: Path, seeds: list[int]) -> None:
    for name, dataset in COVERAGE_SETS.items():
        label = ("--label", "coarse_label") if name == "trec6" else ()
        recipe = init_recipe(dataset, data, work, name, *label)
        for seed in seeds:
            more = ("--set", f"seed={seed}")
            evaluated, _, _ = train_and_evaluate(recipe, work, data, more, baseline=False)
            sets = evaluated["sets"]
            accuracy, covered, chance = linear_sets(recipe, data, seed)
            print(
                f"| {name} | {seed} | {evaluated['accuracy']:.2%} | {sets['empirical']:.4f} | "
                f"{sets['mean_size']:.2f} | {accuracy:.2%} | {covered:.4f} | {chance:.3f} |",
                flush=True,
            )


def calibration_row(label: str, evaluated: dict) -> None:
    c = evaluated["calibration"]
    t = c["temperature"]
    shown = f"{t:.3f}" if isinstance(t, float) else f"{min(t):.2f}-{max(t):.2f} (per label)"
    print(f"| {label} | {c['ece_before']:.4f} | {c['ece_after']:.4f} | {shown} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--imdb", default=None)
    parser.add_argument("--only", default=",".join(STEPS))
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--trec-seeds", default="13,14,15,16,17")
    parser.add_argument("--trec-weights", default="none,balanced")
    parser.add_argument("--coverage-seeds", default="13")
    args = parser.parse_args()
    data, only = str(Path(args.data).resolve()), set(args.only.split(","))
    work = Path(args.out or tempfile.mkdtemp(prefix="label-shapes-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work}\n", flush=True)
    ge = None
    if only & {"goemotions", "init"}:
        print("| GoEmotions | textlstm (test) | one-vs-rest TF-IDF + LR (test) | macro diff | "
              "train wall |\n|---|---|---|---|---|", flush=True)  # fmt: skip
    if "goemotions" in only:
        ge = goemotions(data, work, ROOT / "recipes" / "go_emotions.toml", "go_emotions.toml")
    if "init" in only:
        recipe = init_recipe("local/go_emotions", data, work, "go_emotions_init")
        goemotions(data, work, recipe, "textlstm init")
    if "trec50" in only:
        print("\n| data | accuracy (mean) | macro-F1 (mean) | each seed | train wall |\n"
              "|---|---|---|---|---|", flush=True)  # fmt: skip
        seeds = [int(x) for x in args.trec_seeds.split(",")]
        trec50(data, work, seeds, args.trec_weights.split(","))
    if "coverage" in only:
        print("\n| data (init) | seed | accuracy | coverage at 0.9 | mean set size | linear "
              "control: accuracy | its coverage | in band if exchangeable |\n"
              "|---|---|---|---|---|---|---|---|")  # fmt: skip
        coverage(data, work, [int(x) for x in args.coverage_seeds.split(",")])
    if "calibration" in only:
        print("\n| data | ECE before | ECE after | temperature |\n|---|---|---|---|", flush=True)
        sst2, _, _ = train_and_evaluate(ROOT / "recipes/sst2.toml", work, data, baseline=False)
        calibration_row("SST-2 (sst2.toml, 872 test)", sst2)
        imdb = args.imdb or data
        if (Path(imdb) / "stanfordnlp/imdb").is_dir():
            done, _, _ = train_and_evaluate(ROOT / "recipes/imdb.toml", work, imdb, baseline=False)
            calibration_row("IMDB (imdb.toml, 25,000 test)", done)
        if ge is not None:
            calibration_row("GoEmotions (go_emotions.toml)", ge)


if __name__ == "__main__":
    main()
