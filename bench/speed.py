"""Training and inference speed of the bundled IMDB model against a tutorial-style PyTorch
reference of the same shape, measured in one run, with the FLOP floor of this machine.

Usage: python bench/speed.py [DATA_ROOT] [--quick] [--repeats N]
DATA_ROOT holds stanfordnlp/imdb (default: TEXTLSTM_DATA_DIR). --quick uses 2,000 training and
2,000 test reviews (a few minutes); the full run uses the whole splits, one epoch per row.

Rows (each measured in this run, in a fresh process for the toolkit so that its peak RSS is its own):
- training tokens/s, where a token is a kept token after truncation to max_length, and the
  seconds of one epoch: `textlstm.train` on recipes/imdb.toml (one epoch), and the reference:
  every text padded to max_length, shuffled DataLoader, batch size 32, Embedding -> nn.LSTM
  (bidirectional) -> max over all positions -> dropout -> Linear, Adam; the same token ids;
- the FLOP floor: the LSTM's FLOPs per token (forward + backward) over this machine's measured
  fp32 matmul rate on the same threads, and each row's share of it;
- inference texts/s and tokens/s: `textlstm predict` on the test reviews (a .txt file, one
  review per line, process start and model load included) and the reference's
  one-batch-at-a-time, file-order inference (batch 32, padded to max_length, torch.no_grad);
- peak RSS of the toolkit's training and predict processes.
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

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "imdb.toml"


class TutorialBiLSTM(nn.Module):
    """The model as a tutorial writes it: padded to max_length, pooled over every position."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        return self.fc(self.dropout(out.max(dim=1).values))


def pad(ids: list[np.ndarray], length: int) -> torch.Tensor:
    tokens = np.zeros((len(ids), length), dtype=np.int64)
    for i, row in enumerate(ids):
        tokens[i, :len(row)] = row[:length]
    return torch.from_numpy(tokens)


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def lstm_flops_per_token(embedding: int, hidden: int, directions: int, layers: int) -> float:
    """Forward: 2 * 4H * (input + H) per step and direction; backward costs twice the forward."""
    total, size = 0.0, embedding
    for _ in range(layers):
        total += directions * 2 * 4 * hidden * (size + hidden)
        size = hidden * directions
    return 3 * total


def reference_training(ids, labels, vocab_size, cfg, max_length, lr, seed) -> tuple[float, float]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = TutorialBiLSTM(vocab_size, cfg.embedding_dim, cfg.hidden_size, 2, cfg.dropout)
    loader = DataLoader(TensorDataset(pad(ids, max_length), torch.as_tensor(labels)),
                        batch_size=32, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    kept = sum(min(len(row), max_length) for row in ids)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return kept / seconds, seconds


def reference_inference(texts, encoder, vocab_size, cfg, max_length) -> tuple[float, float]:
    model = TutorialBiLSTM(vocab_size, cfg.embedding_dim, cfg.hidden_size, 2, cfg.dropout).eval()
    tokens = 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            ids = encoder.encode(texts[i:i + 32])
            tokens += sum(len(row) for row in ids)
            model(pad(ids, max_length)).argmax(dim=1)
    seconds = time.perf_counter() - start
    return len(texts) / seconds, tokens / seconds


CHILD = """
import json, resource, sys, time
sys.argv = {argv!r}
start = time.perf_counter()
code = 0
try:
    from textlstm.cli import main
    main()
except SystemExit as exc:
    code = exc.code or 0
print("BENCH " + json.dumps({{"seconds": time.perf_counter() - start, "code": code,
      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def toolkit(argv: list[str], cwd: Path) -> tuple[dict, str]:
    """Run a textlstm command in a fresh process; its wall time, exit code and peak RSS."""
    done = subprocess.run([sys.executable, "-c", CHILD.format(argv=["textlstm", *argv])],
                          capture_output=True, text=True, cwd=cwd)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None or json.loads(line[6:])["code"] != 0:
        sys.exit(f"textlstm {' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(line[6:]), done.stdout


def write_subset(root: str | None, folder: Path, rows: int | None) -> tuple[Path, list[str], list[int]]:
    """The IMDB mirror's train and test splits (or their first ``rows`` of each, stratified by
    taking every k-th review) as parquet files in the hub layout."""
    import datasets

    from textlstm.sources import load_raw

    raw, *_ = load_raw("stanfordnlp/imdb", None, root, None)
    out = folder / "imdb"
    out.mkdir(parents=True)
    for split in ("train", "test"):
        ds = raw[split]
        if rows:
            ds = ds.select(range(0, len(ds), max(1, len(ds) // rows))[:rows])
        ds.to_parquet(str(out / f"{split}.parquet"))
    test = datasets.load_dataset("parquet", data_files=str(out / "test.parquet"), split="train")
    return out, list(test["text"]), list(test["label"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--quick", action="store_true", help="2,000 reviews per split")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    if not args.data or not (Path(args.data) / "stanfordnlp" / "imdb").is_dir():
        sys.exit("bench/speed.py needs the IMDB mirror: python bench/speed.py <root holding "
                 "stanfordnlp/imdb> (see bench/README.md)")
    from textlstm.recipe import load_recipe
    from textlstm.training import prepare

    rows = 2000 if args.quick else None
    repeats = args.repeats or (3 if args.quick else 1)
    recipe = load_recipe(RECIPE)
    cfg, max_length = recipe.model, recipe.tokenizer.max_length
    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="textlstm-bench-"))
    data, test_texts, _ = write_subset(args.data, work, rows)
    text_file = work / "test.txt"
    text_file.write_text("".join(t.replace("\n", " ").replace("\r", " ") + "\n" for t in test_texts),
                         encoding="utf-8")
    subset = recipe.model_copy(update={"data": recipe.data.model_copy(update={"dataset": str(data)})})
    prepared = prepare(subset, None)
    train_ids = prepared.ids["train"]
    labels = np.asarray(prepared.splits["train"]["label"])
    kept = int(sum(len(r) for r in train_ids))
    flops = lstm_flops_per_token(cfg.embedding_dim, cfg.hidden_size,
                                 2 if cfg.bidirectional else 1, cfg.num_layers)
    gflops = matmul_gflops()
    floor = gflops * 1e9 / flops
    print(f"{len(train_ids):,} training reviews ({kept:,} kept tokens, max_length {max_length}), "
          f"{len(test_texts):,} test reviews; {threads} threads; torch {torch.__version__}")
    print(f"fp32 matmul {gflops:,.0f} GFLOP/s; LSTM {flops / 1e6:.2f} MFLOP per token (forward + "
          f"backward) -> FLOP floor {floor:,.0f} tokens/s")

    ours, ref = [], []
    run_dir, train_rss = None, 0.0
    for rep in range(repeats):  # interleaved, so drifts in machine load hit both
        out = work / f"runs{rep}"
        stats, stdout = toolkit(["train", str(RECIPE), "--set", f'data.dataset="{data}"',
                                 "--set", "train.epochs=1", "--out", str(out), "--device", "cpu"],
                                ROOT)
        metrics = json.loads(next(out.glob("imdb/2*/metrics.jsonl")).read_text().splitlines()[0])
        ours.append((metrics["tokens_per_second"], kept / metrics["tokens_per_second"]))
        train_rss = max(train_rss, stats["maxrss_mb"])
        run_dir = next(out.glob("imdb/2*"))
        ref.append(reference_training(train_ids, labels, len(prepared.vocab), cfg, max_length,
                                      recipe.train.lr, recipe.seed + rep))

    predicted, ref_inference = [], []
    for rep in range(repeats):
        stats, _ = toolkit(["predict", str(run_dir), str(text_file), "-o", str(work / "p.jsonl"),
                            "--device", "cpu"], ROOT)
        predicted.append(stats)
        ref_inference.append(reference_inference(test_texts, prepared.encoder, len(prepared.vocab),
                                                 cfg, max_length))
    test_tokens = sum(len(r) for r in prepared.encoder.encode(test_texts))

    def median(values, index=None):
        return statistics.median(v[index] if index is not None else v for v in values)

    ours_tps, ref_tps = median(ours, 0), median(ref, 0)
    pred_seconds = statistics.median(p["seconds"] for p in predicted)
    ref_texts = median(ref_inference, 0)
    print()
    print(f"{'row':44s} {'value':>14s} {'reference':>14s} {'ratio':>7s}")
    print(f"{'training tokens/s (median of ' + str(repeats) + ')':44s} {ours_tps:>14,.0f} "
          f"{ref_tps:>14,.0f} {ours_tps / ref_tps:>6.2f}x")
    print(f"{'seconds per epoch':44s} {median(ours, 1):>14,.1f} {median(ref, 1):>14,.1f} "
          f"{median(ref, 1) / median(ours, 1):>6.2f}x")
    print(f"{'share of the FLOP floor':44s} {ours_tps / floor:>13.1%} {ref_tps / floor:>13.1%}")
    print(f"{'predict texts/s (fp32, whole command)':44s} {len(test_texts) / pred_seconds:>14,.0f} "
          f"{ref_texts:>14,.0f} {len(test_texts) / pred_seconds / ref_texts:>6.2f}x")
    print(f"{'predict tokens/s (fp32, whole command)':44s} {test_tokens / pred_seconds:>14,.0f} "
          f"{median(ref_inference, 1):>14,.0f}")
    print(f"{'peak RSS, training (MB)':44s} {train_rss:>14,.0f}")
    print(f"{'peak RSS, predict (MB)':44s} {max(p['maxrss_mb'] for p in predicted):>14,.0f}")


if __name__ == "__main__":
    main()
