"""Data far larger than IMDB: time and peak memory of `check`, preprocessing with the first training
steps, and `predict`, at 25,000, 250,000 and 1,000,000 training texts.

Usage: python bench/data_scale.py [DATA_ROOT] [--sizes 25000,250000,1000000] [--steps 2000]
                                  [--work DIR]
DATA_ROOT (default TEXTLSTM_DATA_DIR) holds stanfordnlp/imdb. --work keeps the generated corpora
(about 1.4 GB of parquet and 1.3 GB of text at 1,000,000) and the runs; by default a temp folder,
removed at the end. Nothing else may run meanwhile: the times are compared across sizes.

The corpus of N texts: IMDB's 25,000 training reviews (in a fixed shuffled order), then copies
of them in which each word is dropped at random (one in ten, a seed per copy), so that no two
texts are the same and the vocabulary and lengths stay IMDB's. Labels are the reviews'. Each size
is written once as parquet (train.parquet, with IMDB's 25,000 test reviews as test.parquet) and
as a text file of its N training texts, one per line, for predict.

Steps, each a fresh process whose peak RSS (VmHWM: its own pages since its start, not the bench's)
is its own, with a cache folder of its own so nothing is reused between steps or sizes; the
recipe is recipes/imdb.toml with the corpus as its data:
- check: `textlstm check RECIPE` (the recipe resolved, the data summarized: labels, lengths);
- train: `textlstm.train` on the recipe, as the CLI runs it, stopped after --steps optimizer
  steps (with train.epochs = 10 and no early stopping, so that 25,000 texts reach them):
  preprocessing (splits, vocabulary, token ids into the Arrow cache) is the time until the run
  folder is made; model.wide's fit and the steps are timed on their own, the steps without the
  validation passes between epochs;
- predict: `textlstm predict RUN FILE -o OUT` on the N texts, with one run trained on the first
  25,000 texts for one epoch (its time is not reported).

The table gives, per size: seconds and microseconds per text of each step, peak RSS, and the size
of the training token ids (int32, as kept in the cache); each peak against 3x that size plus
1.5 GB, and each time per text against 1.3x that at the smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from speed import CHILD, PEAK  # a textlstm command in a fresh process, timed; a peak RSS

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "imdb.toml"
BASE = 25_000
DROP = 0.1  # share of words dropped in each copy
ROW_GROUP = 20_000

TRAIN = (
    PEAK
    + """
import json, os, sys, time
start = time.perf_counter()
import textlstm
import textlstm.training.trainer as trainer
from textlstm.training import Events

marks = {{}}


def timed(name, work):
    def run(*args, **kwargs):
        tick = time.perf_counter()
        result = work(*args, **kwargs)
        marks[name] = time.perf_counter() - tick
        marks[name + "_rss_mb"] = peak_mb()
        return result
    return run


trainer.prepare = timed("prepare", trainer.prepare)  # splits, vocabulary, token ids
trainer.fit_wide = timed("wide", trainer.fit_wide)  # model.wide's fit


class Stop(Events):
    # times the steps alone: from each epoch's start to its batches' ends, not validation
    steps, busy, tick = 0, 0.0, 0.0

    def epoch_start(self, epoch, epochs, batches):
        self.tick = time.perf_counter()

    def batch_end(self, loss, tokens):
        self.steps += 1
        now = time.perf_counter()
        self.busy, self.tick = self.busy + now - self.tick, now
        if self.steps == {steps}:
            marks["steps"] = self.busy
            marks["seconds"] = time.perf_counter() - start
            marks["maxrss_mb"] = peak_mb()
            print("BENCH " + json.dumps(marks), flush=True)
            os._exit(0)

    def message(self, text):
        if text.startswith("model.wide:"):
            marks["wide_note"] = text


recipe = textlstm.load_recipe({recipe!r}, {overrides!r})
textlstm.train(recipe, out_dir={out!r}, device="cpu", events=Stop())
print("BENCH " + json.dumps({{"error": "training ended before {steps} steps"}}))
"""
)


def imdb_reviews(root: str) -> tuple[pa.Table, pa.Table]:
    from textlstm.data.sources import load_raw

    raw, *_ = load_raw("stanfordnlp/imdb", None, root, None)
    train, test = (raw[s].data.table.select(["text", "label"]) for s in ("train", "test"))
    # the mirror is sorted by label: in a fixed shuffled order, any first N are mixed
    return train.take(np.random.default_rng(0).permutation(len(train))), test


def perturbed(texts: list[str], copy: int) -> list[str]:
    """Each text with one word in ten dropped, drawn from the copy's own seed."""
    rng = np.random.default_rng([20261207, copy])
    words = [t.split(" ") for t in texts]
    keep = rng.random(sum(len(w) for w in words)) >= DROP
    out, at = [], 0
    for w in words:
        mask = keep[at : at + len(w)]
        at += len(w)
        out.append(" ".join(x for x, k in zip(w, mask) if k) or w[0])
    return out


def write_corpus(train: pa.Table, test: pa.Table, size: int, folder: Path) -> Path:
    """train.parquet of ``size`` texts, test.parquet, and texts.txt (one training text a line)."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(test, folder / "test.parquet")
    texts, labels = train.column("text").to_pylist(), train.column("label").to_pylist()
    schema = pa.schema([("text", pa.string()), ("label", train.schema.field("label").type)])
    with (
        pq.ParquetWriter(folder / "train.parquet", schema) as writer,
        open(folder / "texts.txt", "w", encoding="utf-8") as lines,
    ):
        done, copy = 0, 0
        while done < size:
            part = texts if copy == 0 else perturbed(texts, copy)
            take = min(len(part), size - done)
            for start in range(0, take, ROW_GROUP):
                stop = min(take, start + ROW_GROUP)
                batch = {"text": part[start:stop], "label": labels[start:stop]}
                writer.write_table(pa.table(batch, schema=schema))
            lines.writelines(t.replace("\n", " ").replace("\r", " ") + "\n" for t in part[:take])
            done, copy = done + take, copy + 1
    return folder


def child(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    result = json.loads(line[6:]) if line else {"error": "no result"}
    if "error" in result or result.get("code", 0) != 0:
        sys.exit(f"a step failed: {result}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return result


def environment(cache: Path) -> dict[str, str]:
    """Each step with a cache and vocabulary store of its own: nothing is reused."""
    shutil.rmtree(cache, ignore_errors=True)
    return {
        **os.environ,
        "TEXTLSTM_CACHE": str(cache / "cache"),
        "TEXTLSTM_VOCAB_DIR": str(cache / "vocab"),
        "HF_DATASETS_CACHE": str(cache / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def cli(argv: list[str], cache: Path) -> dict:
    return child(CHILD.format(argv=["textlstm", *argv]), environment(cache))


def token_bytes(cache: Path) -> int:
    """The training split's token ids as the cache keeps them (int32), from the train step."""
    files = list((cache / "cache" / "ids").rglob("*.arrow"))
    import datasets

    sizes = []
    for f in files:
        # from the list offsets only: reading the ids would make their pages this process's,
        # and every later step's process would start from (and report) that high-water mark
        chunks = datasets.Dataset.from_file(str(f)).data.column("ids").chunks
        sizes.append(sum(c.offsets[-1].as_py() - c.offsets[0].as_py() for c in chunks) * 4)
    return max(sizes) if sizes else 0


def measure(corpus: Path, size: int, steps: int, run: Path, work: Path) -> dict:
    data = [f'data.dataset="{corpus}"']
    sets = [x for d in data for x in ("--set", d)]
    row: dict = {"size": size}
    row["check"] = cli(["check", str(RECIPE), *sets], work / "cache-check")
    train_cache = work / "cache-train"
    # enough epochs for the steps at the smallest size, none of them ended early
    overrides = [*data, "train.epochs=10", "train.patience=0"]
    code = TRAIN.format(
        recipe=str(RECIPE), overrides=overrides, out=str(work / f"runs-{size}"), steps=steps
    )
    row["train"] = child(code, environment(train_cache))
    row["token_bytes"] = token_bytes(train_cache)
    out = work / f"predicted-{size}.jsonl"
    predict = ["predict", str(run), str(corpus / "texts.txt"), "-o", str(out)]
    row["predict"] = cli(predict, work / "cache-predict")
    out.unlink(missing_ok=True)
    shutil.rmtree(work / f"runs-{size}", ignore_errors=True)
    return row


def small_run(corpus: Path, work: Path) -> Path:
    """One epoch on the smallest corpus: the run that predict uses at every size."""
    out = work / "predict-run"
    sets = ["--set", f'data.dataset="{corpus}"', "--set", "train.epochs=1"]
    cli(["train", str(RECIPE), *sets, "--out", str(out), "--device", "cpu"], work / "cache-small")
    return out / "imdb" / "latest"


def report(rows: list[dict]) -> None:
    first = rows[0]

    def figure(row: dict, step: str, key: str) -> float:
        """A step's seconds ("seconds") or peak RSS ("maxrss_mb")."""
        if step == "preprocessing":
            return row["train"]["prepare" if key == "seconds" else key]
        return row[step][key]

    def seconds(row: dict, step: str) -> float:
        return figure(row, step, "seconds")

    def rss(row: dict, step: str) -> float:
        return figure(row, step, "maxrss_mb")

    print("\n| texts | step | seconds | µs per text | vs smallest | peak RSS MB | bound MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        n, ids_mb = row["size"], row["token_bytes"] / 2**20
        bound = 3 * ids_mb + 1536
        for step in ("check", "preprocessing", "predict"):
            per, ref = seconds(row, step) / n, seconds(first, step) / first["size"]
            peak = rss(row, step)
            flag = "" if peak <= bound else " (over)"
            label = step if step != "preprocessing" else "preprocessing + first steps (RSS)"
            print(
                f"| {n:,} | {label} | {seconds(row, step):,.1f} | {per * 1e6:,.1f} | "
                f"{per / ref:.2f}x | {peak:,.0f}{flag} | {bound:,.0f} |"
            )
        train = row["train"]
        print(
            f"| {n:,} | model.wide fit; first steps | {train['wide']:,.1f}; "
            f"{train['steps']:,.1f} | | {train['steps'] / first['train']['steps']:.2f}x (steps) "
            f"| | token ids {ids_mb:,.0f} MB |"
        )
    for row in rows:
        print(f"{row['size']:,}: {row['train'].get('wide_note', 'no model.wide')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--sizes", default="25000,250000,1000000")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if not args.data or not (Path(args.data) / "stanfordnlp" / "imdb").is_dir():
        sys.exit("bench/data_scale.py needs DATA_ROOT holding stanfordnlp/imdb (bench/README.md)")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="textlstm-scale-"))
    train, test = imdb_reviews(args.data)
    corpora = {}
    for size in sizes:
        folder = work / f"corpus-{size}"
        if not (folder / "texts.txt").is_file():
            tick = time.perf_counter()
            write_corpus(train, test, size, folder)
            print(f"corpus of {size:,} texts written in {time.perf_counter() - tick:.0f} s")
        corpora[size] = folder
    run = small_run(corpora[sizes[0]], work)
    rows = []
    for size in sizes:
        rows.append(measure(corpora[size], size, args.steps, run, work))
        print(json.dumps(rows[-1]), flush=True)
    report(rows)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
