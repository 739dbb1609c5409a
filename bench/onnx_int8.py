"""Where onnxruntime's int8 LSTM pays off: the bundled IMDB model's shape at several LSTM widths,
exported as `textlstm export` exports (fp32, and `--quantize int8`: a fused DynamicQuantizeLSTM per
layer and direction), timed model-only in onnxruntime beside PyTorch fp32 on the same batches.

Usage: python bench/onnx_int8.py [--hidden 128,256,512] [--texts 1024] [--batch 32] [--repeats 5]

The models are untrained (timing does not depend on the weights); the texts are random ids with
IMDB-like lengths (geometric, median about 230 tokens, cut at the recipe's max_length), sorted by
length into batches as `predict` sorts them. Every engine runs every batch once per repeat, the
engines interleaved within a repeat; the table gives the median texts/s and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from textlstm.export.onnx import (
    WithProbabilities,
    check_batch,
    freeze_recurrent_weights,
    quantize_int8,
    trace,
)
from textlstm.model.classifier import LSTMClassifier
from textlstm.predict.exported import session
from textlstm.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 30000


def batches(texts: int, batch: int, max_length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.geometric(1 / 300, texts), 8, max_length)
    lengths = np.sort(lengths)[::-1]
    out = []
    for start in range(0, texts, batch):
        part = lengths[start : start + batch]
        tokens = np.zeros((len(part), int(part.max())), dtype=np.int64)
        for row, n in enumerate(part):
            tokens[row, :n] = rng.integers(2, VOCAB, n)
        out.append((tokens, part.astype(np.int64)))
    return out


def engines(hidden: int, folder: Path) -> tuple[dict, int]:
    recipe = load_recipe(ROOT / "recipes" / "imdb.toml", [f"model.hidden_size={hidden}"])
    torch.manual_seed(0)
    model = WithProbabilities(LSTMClassifier(recipe.model, VOCAB, 2).float().eval())
    fp32, int8 = folder / f"h{hidden}.onnx", folder / f"h{hidden}.int8.onnx"
    trace(model, fp32)
    freeze_recurrent_weights(fp32, *check_batch(VOCAB, recipe.tokenizer.max_length))
    quantize_int8(fp32, int8)
    sessions = {"onnxruntime fp32": session(fp32), "onnxruntime int8": session(int8)}

    def torch_run(tokens: np.ndarray, lengths: np.ndarray) -> None:
        with torch.inference_mode():
            model(torch.from_numpy(tokens), torch.from_numpy(lengths))

    def ort_run(name: str):
        return lambda tokens, lengths: sessions[name].run(
            ["probabilities"], {"tokens": tokens, "lengths": lengths}
        )

    run = {"PyTorch fp32": torch_run} | {name: ort_run(name) for name in sessions}
    return run, recipe.tokenizer.max_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", default="128,256,512")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; {args.texts} texts in batches of {args.batch}")
    print("| hidden | PyTorch fp32 texts/s | ORT fp32 | ORT int8 | int8 vs ORT fp32 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for hidden in [int(h) for h in args.hidden.split(",")]:
            run, max_length = engines(hidden, Path(scratch))
            data = batches(args.texts, args.batch, max_length)
            for fn in run.values():  # warm-up: first calls allocate and pick kernels
                fn(*data[0])
            seconds: dict[str, list[float]] = {name: [] for name in run}
            for _ in range(args.repeats):
                for name, fn in run.items():
                    tick = time.perf_counter()
                    for tokens, lengths in data:
                        fn(tokens, lengths)
                    seconds[name].append(time.perf_counter() - tick)
            rate = {name: args.texts / statistics.median(s) for name, s in seconds.items()}
            base = rate["PyTorch fp32"]
            fp32, int8 = rate["onnxruntime fp32"], rate["onnxruntime int8"]
            print(
                f"| {hidden} | {base:,.0f} | {fp32:,.0f} ({fp32 / base:.2f}x) | "
                f"{int8:,.0f} ({int8 / base:.2f}x) | {int8 / fp32:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
