"""Training throughput on 1 and N processes (torchrun + DistributedDataParallel), measured in one
run, interleaved, with the time one gradient all-reduce takes measured beside it.

Usage: python bench/scaling.py [DATA_ROOT] [--recipe recipes/sst2.toml] [--nproc 1,2]
                               [--rounds 2] [--device cpu|cuda] [--epochs 1]

DATA_ROOT (default TEXTLSTM_DATA_DIR) holds the recipe's data (stanfordnlp/sst2 for the default
recipe). Each configuration runs the real command, `textlstm train` for 1 process and
`torchrun --standalone --nproc-per-node N -m textlstm train` for N, with `train.epochs` set to
--epochs and no early stopping, and reads the training tokens/s of each epoch from the run's
metrics.jsonl (training steps only: validation and start-up are not in it). Configurations
alternate round by round, so drift of a shared machine reaches each alike; the table gives the
median of the rounds and each configuration's ratio to 1 process.

The all-reduce row: N gloo (CPU) or NCCL (GPU) processes all-reduce one float32 tensor of the
model's parameter count, the volume DDP exchanges each step (in buckets); its median time times
the steps of an epoch is the epoch's communication, if none of it overlapped the backward pass.

On a machine with several GPUs: python bench/scaling.py DATA --nproc 1,2,4,8 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(recipe: str, nproc: int, data: str, device: str, epochs: int, out: Path) -> dict:
    """One run of the real command; its per-epoch training tokens/s and wall time."""
    args = ["train", recipe, "--data-dir", data, "--device", device, "--out", str(out)]
    args += ["--set", f"train.epochs={epochs}", "--set", "train.patience=0"]
    if nproc == 1:
        command = [sys.executable, "-m", "textlstm", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc-per-node", str(nproc), "-m", "textlstm", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    tick = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    (run,) = [p for p in out.rglob("metrics.jsonl") if p.parent.name != "latest"]
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    meta = json.loads((run.parent / "meta.json").read_text())
    return {
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        "wall": wall,
        "accuracy": meta["validation"]["accuracy"],
    }


ALLREDUCE = """
import os, statistics, sys, time
import torch, torch.distributed as dist
cuda = sys.argv[2] == "cuda"
if cuda:
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if cuda else "gloo")
x = torch.ones(int(sys.argv[1]), device="cuda" if cuda else "cpu")
times = []
for i in range(30):
    dist.barrier()
    tick = time.perf_counter()
    dist.all_reduce(x)
    if cuda:
        torch.cuda.synchronize()
    times.append(time.perf_counter() - tick)
if dist.get_rank() == 0:
    print(statistics.median(times[5:]))
dist.destroy_process_group()
"""


def allreduce_seconds(parameters: int, nproc: int, device: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(ALLREDUCE)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc), script.name, str(parameters), device]
    done = subprocess.run(command, capture_output=True, text=True)
    os.unlink(script.name)
    if done.returncode != 0:
        sys.exit(f"the all-reduce probe failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def model_size(recipe: str, data: str) -> tuple[int, int]:
    """The recipe's parameter count and optimizer steps per epoch, from its data."""
    import torch

    from textlstm.recipe import load_recipe
    from textlstm.training import prepare
    from textlstm.training.setup import build_fit, plan_epochs

    loaded = load_recipe(recipe)
    prepared = prepare(loaded, data)
    fit = build_fit(plan_epochs(loaded, prepared), prepared, torch.device("cpu"))
    steps = -(-len(prepared.ids["train"]) // loaded.train.batch_size)
    return sum(p.numel() for p in fit.model.parameters() if p.requires_grad), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--recipe", default="recipes/sst2.toml")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if not args.data:
        sys.exit("bench/scaling.py needs DATA_ROOT (or TEXTLSTM_DATA_DIR); see bench/README.md")
    counts = [int(n) for n in args.nproc.split(",")]
    recipe = str((ROOT / args.recipe).resolve())
    parameters, steps = model_size(recipe, args.data)
    results: dict[int, list[dict]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for n in counts if round_ % 2 == 0 else counts[::-1]:
                out = Path(scratch) / f"r{round_}-n{n}"
                results[n].append(train(recipe, n, args.data, args.device, args.epochs, out))
                print(f"round {round_ + 1}, {n} process(es): {results[n][-1]}", flush=True)
    base = statistics.median(r["tokens_per_second"] for r in results[counts[0]])
    print(f"\n{args.recipe}: {parameters:,} parameters, {steps:,} steps per epoch; {args.device}")
    print("| processes | train tokens/s | vs 1 | epoch s | validation acc | all-reduce ms |")
    print("|---|---|---|---|---|---|")
    for n in counts:
        rate = statistics.median(r["tokens_per_second"] for r in results[n])
        seconds = statistics.median(r["train_seconds"] for r in results[n]) / args.epochs
        accuracy = statistics.median(r["accuracy"] for r in results[n])
        reduce = "" if n == 1 else f"{allreduce_seconds(parameters, n, args.device) * 1e3:.1f}"
        if reduce:
            reduce += f" (x {steps:,} steps = {float(reduce) * steps / 1e3:.1f} s/epoch)"
        cells = [str(n), f"{rate:,.0f}", f"{rate / base:.2f}x", f"{seconds:.1f}"]
        print("| " + " | ".join([*cells, f"{accuracy:.2%}", reduce]) + " |")


if __name__ == "__main__":
    main()
