"""Training and inference speed of the bundled IMDB model against a tutorial-style PyTorch
reference of the same shape, measured in one run, with the FLOP floor of this machine.

Usage: python bench/speed.py [DATA_ROOT] [--quick | --rows N] [--repeats N] [--train-repeats N]
                             [--no-keras] [--device cpu|cuda]
DATA_ROOT holds stanfordnlp/imdb (default: TEXTLSTM_DATA_DIR). --quick uses 2,000 training and
2,000 test reviews (under 3 minutes), --rows N that many; the full run uses the whole splits.
--device cuda runs every row on the GPU (the toolkit's, the reference's and the matmul rate; the
onnxruntime rows stay on the CPU, and the Keras rows, tensorflow-cpu, are skipped).
Training rows run one epoch once (--train-repeats), inference rows three times (--repeats); the
table gives medians.

Rows (each measured in this run, in a fresh process for the toolkit, so its peak RSS is its own):
- training tokens/s, where a token is a kept token after truncation to max_length, and the
  seconds of one epoch: `textlstm train` on recipes/imdb.toml in the reference's shape (max
  pooling, no n-gram branch: see SHAPE; one epoch) in fp32 and in bf16; the PyTorch reference:
  every text padded to max_length, shuffled DataLoader, batch size 32, Embedding -> nn.LSTM
  (bidirectional) -> max over all positions -> dropout -> Linear, Adam, on the same token ids;
  and the same model in Keras (bench/keras_ref.py, `model.fit` defaults, in a venv of its own
  holding tensorflow-cpu, made on first use under ~/.cache/textlstm/keras-venv or
  TEXTLSTM_KERAS_VENV);
- the FLOP floor: the LSTM's FLOPs per token (forward + backward) over this machine's measured
  fp32 matmul rate on the same threads (the highest of three samples taken through the run), and
  each row's share of it;
- inference texts/s and tokens/s: `textlstm predict` on the test reviews (a .txt file, one
  review per line, process start and model load included) in fp32, in the recipe's precision
  and with `--quantize int8`, and the run exported to ONNX (`textlstm export`, fp32 and
  `--quantize int8`) run by onnxruntime, each with its test accuracy; the reference's
  one-batch-at-a-time, file-order inference (batch 32, padded to max_length, torch.no_grad)
  and Keras `model.predict`;
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
# the bundled recipe's LSTM in the reference's shape (max pooling, no n-gram branch), trained in
# bf16 too where the CPU has the kernels, so the rows compare the same network
SHAPE = {
    "pooling": "max",
    "ngrams": 0,
    "ngram_dim": 64,
    "ngram_buckets": 65_536,
    "ngram_dropout": 0.2,
}


def shaped_recipe(work: Path):
    """recipes/imdb.toml in the reference's shape, written to ``work``; (recipe, path)."""
    from textlstm.recipe import load_recipe, recipe_from_dict

    raw = load_recipe(RECIPE).model_dump(mode="json")
    raw["model"].update(SHAPE)
    raw["train"]["precision"] = "bf16"
    raw.pop("source", None)
    recipe = recipe_from_dict({k: v for k, v in raw.items() if v is not None}, str(RECIPE))
    path = work / "imdb-speed.toml"
    path.write_text(recipe.to_toml(), encoding="utf-8")
    return recipe, path


class TutorialBiLSTM(nn.Module):
    """The model as a tutorial writes it: padded to max_length, pooled over every position."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden_size: int, classes: int, dropout: float
    ) -> None:
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
        tokens[i, : len(row)] = row[:length]
    return torch.from_numpy(tokens)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    size = size * 4 if device.type == "cuda" else size
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def lstm_flops_per_token(embedding: int, hidden: int, directions: int, layers: int) -> float:
    """Forward: 2 * 4H * (input + H) per step and direction; backward costs twice the forward."""
    total, size = 0.0, embedding
    for _ in range(layers):
        total += directions * 2 * 4 * hidden * (size + hidden)
        size = hidden * directions
    return 3 * total


def reference_training(
    ids, labels, vocab_size, cfg, max_length, lr, seed, device
) -> tuple[float, float]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = TutorialBiLSTM(vocab_size, cfg.embedding_dim, cfg.hidden_size, 2, cfg.dropout)
    model.to(device)
    loader = DataLoader(
        TensorDataset(pad(ids, max_length), torch.as_tensor(labels)), batch_size=32, shuffle=True
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    kept = sum(min(len(row), max_length) for row in ids)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    return kept / seconds, seconds


def reference_inference(texts, encoder, vocab_size, cfg, max_length, device) -> tuple[float, float]:
    model = TutorialBiLSTM(vocab_size, cfg.embedding_dim, cfg.hidden_size, 2, cfg.dropout)
    model.to(device).eval()
    tokens = 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            ids = encoder.encode(texts[i : i + 32])
            tokens += sum(len(row) for row in ids)
            model(pad(ids, max_length).to(device)).argmax(dim=1).cpu()
    seconds = time.perf_counter() - start
    return len(texts) / seconds, tokens / seconds


# A child's own peak RSS. On Linux, ru_maxrss survives exec: a process started by subprocess
# also reports the high-water mark of the bench process it was forked from (whatever data the
# bench holds), while VmHWM counts only the pages mapped since the exec.
PEAK = """
import resource


def peak_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""

CHILD = (
    PEAK
    + """
import json, sys, time
sys.argv = {argv!r}
start = time.perf_counter()
code = 0
try:
    from textlstm.cli import main
    main()
except SystemExit as exc:
    code = exc.code or 0
print("BENCH " + json.dumps({{"seconds": time.perf_counter() - start, "code": code,
      "maxrss_mb": peak_mb()}}))
"""
)


def toolkit(argv: list[str], cwd: Path) -> tuple[dict, str]:
    """Run a textlstm command in a fresh process; its wall time, exit code and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(argv=["textlstm", *argv])],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None or json.loads(line[6:])["code"] != 0:
        sys.exit(f"textlstm {' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(line[6:]), done.stdout


def write_subset(
    root: str | None, folder: Path, rows: int | None
) -> tuple[Path, list[str], list[int]]:
    """The IMDB mirror's train and test splits (or their first ``rows`` of each, stratified by
    taking every k-th review) as parquet files in the hub layout."""
    import datasets

    from textlstm.data.sources import load_raw

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


KERAS_VENV = Path(
    os.environ.get("TEXTLSTM_KERAS_VENV", Path.home() / ".cache" / "textlstm" / "keras-venv")
)


def keras_python() -> tuple[Path | None, str]:
    """The Python of a venv holding tensorflow-cpu, made on first use; (None, why) if it fails."""
    python = KERAS_VENV / "bin" / "python"
    check = [str(python), "-c", "import tensorflow, keras"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    print(f"making the Keras venv in {KERAS_VENV} (pip install tensorflow-cpu; once)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(KERAS_VENV)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "tensorflow-cpu",
        ],
        check,
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return python, ""


def keras_reference(
    python: Path, work: Path, train_ids, labels, test_ids, vocab_size, cfg, max_length, lr
) -> dict:
    """Train one epoch and infer the test reviews with the Keras model, in its own process."""
    npz, result = work / "keras.npz", work / "keras.json"
    np.savez(
        npz,
        train_x=pad(train_ids, max_length).numpy().astype(np.int32),
        train_y=np.asarray(labels, dtype=np.int32),
        test_x=pad(test_ids, max_length).numpy().astype(np.int32),
        kept=sum(min(len(r), max_length) for r in train_ids),
        vocab=vocab_size,
        embedding_dim=cfg.embedding_dim,
        hidden_size=cfg.hidden_size,
        classes=2,
        dropout=cfg.dropout,
        lr=lr,
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [str(python), str(ROOT / "bench" / "keras_ref.py"), str(npz), str(result)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        sys.exit(f"bench/keras_ref.py failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def labels_of(predictions: Path) -> list[str]:
    return [json.loads(line)["label"] for line in predictions.read_text().splitlines()]


def accuracy_of(got: list[str], truth: list[int], labels: list[str]) -> float:
    return sum(g == labels[t] for g, t in zip(got, truth)) / len(truth)


def agreement(got: list[str], fp32: list[str]) -> str:
    """How many labels a mode shares with fp32 (its accuracy alone hides flips that cancel)."""
    if got is fp32:
        return ""
    same = sum(a == b for a, b in zip(got, fp32))
    return f", the same label as fp32 for {same:,} of {len(fp32):,}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--quick", action="store_true", help="2,000 reviews per split")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repetitions of the inference rows, which take seconds (default 3)",
    )
    parser.add_argument(
        "--train-repeats",
        type=int,
        default=1,
        help="repetitions of the training rows, an epoch each (default 1)",
    )
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras rows")
    parser.add_argument("--rows", type=int, default=None, help="reviews per split (--quick: 2,000)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if not args.data or not (Path(args.data) / "stanfordnlp" / "imdb").is_dir():
        sys.exit(
            "bench/speed.py needs the IMDB mirror: python bench/speed.py <root holding "
            "stanfordnlp/imdb> (see bench/README.md)"
        )
    from textlstm.training import prepare

    rows = args.rows or (2000 if args.quick else None)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/speed.py --device cuda: torch sees no CUDA device here")
    repeats, train_repeats = args.repeats, args.train_repeats
    work = Path(tempfile.mkdtemp(prefix="textlstm-bench-"))
    recipe, shaped = shaped_recipe(work)
    cfg, max_length = recipe.model, recipe.tokenizer.max_length
    bundled = recipe.train.precision
    threads = torch.get_num_threads()
    keras, why = (
        (None, "--no-keras")
        if args.no_keras
        else (None, "tensorflow-cpu runs on the CPU only")
        if device.type == "cuda"
        else keras_python()
    )
    data, test_texts, test_labels = write_subset(args.data, work, rows)
    text_file = work / "test.txt"
    text_file.write_text(
        "".join(t.replace("\n", " ").replace("\r", " ") + "\n" for t in test_texts),
        encoding="utf-8",
    )
    subset = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"dataset": str(data)})}
    )
    prepared = prepare(subset, None)
    train_ids = prepared.ids["train"]
    labels = np.asarray(prepared.splits["train"]["label"])
    kept = int(sum(len(r) for r in train_ids))
    flops = lstm_flops_per_token(
        cfg.embedding_dim, cfg.hidden_size, 2 if cfg.bidirectional else 1, cfg.num_layers
    )
    # the matmul rate drifts with the machine's load and clock: it is sampled before the training
    # rows, after them and at the end, and the highest sample sets the floor (the strictest one)
    rates = [matmul_gflops(device)]
    gflops = rates[0]
    floor = gflops * 1e9 / flops
    print(
        f"{len(train_ids):,} training reviews ({kept:,} kept tokens, max_length {max_length}), "
        f"{len(test_texts):,} test reviews; {args.device}, {threads} threads; "
        f"torch {torch.__version__}; "
        f"recipes/imdb.toml trains in {bundled}"
    )
    print(
        f"fp32 matmul {gflops:,.0f} GFLOP/s (first sample); LSTM {flops / 1e6:.2f} MFLOP per "
        f"token (forward + backward)",
        flush=True,
    )

    precisions = ["fp32"] if bundled == "fp32" else ["fp32", bundled]
    ours: dict[str, list[tuple[float, float]]] = {p: [] for p in precisions}
    ref: list[tuple[float, float]] = []
    runs: dict[str, Path] = {}
    train_rss = 0.0
    for rep in range(train_repeats):  # interleaved, so drifts in machine load hit every row
        for precision in precisions:
            out = work / f"runs-{precision}-{rep}"
            stats, _ = toolkit(
                [
                    "train",
                    str(shaped),
                    "--set",
                    f'data.dataset="{data}"',
                    "--set",
                    "train.epochs=1",
                    "--set",
                    f'train.precision="{precision}"',
                    "--out",
                    str(out),
                    "--device",
                    args.device,
                ],
                ROOT,
            )
            run = next(out.glob("imdb/2*"))
            metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
            ours[precision].append(
                (metrics["tokens_per_second"], kept / metrics["tokens_per_second"])
            )
            train_rss = max(train_rss, stats["maxrss_mb"])
            runs.setdefault(precision, run)
        ref.append(
            reference_training(
                train_ids,
                labels,
                len(prepared.vocab),
                cfg,
                max_length,
                recipe.train.lr,
                recipe.seed + rep,
                device,
            )
        )
        print(f"training repetition {rep + 1} of {train_repeats} done", flush=True)
    rates.append(matmul_gflops(device))
    keras_row = None
    if keras is not None:
        keras_row = keras_reference(
            keras,
            work,
            train_ids,
            labels,
            prepared.encoder.encode(test_texts),
            len(prepared.vocab),
            cfg,
            max_length,
            recipe.train.lr,
        )
        print("Keras rows done", flush=True)

    # inference: the bundled run (trained in `bundled`) in fp32, in its own precision, and int8
    run = runs[bundled]
    names = json.loads((run / "labels.json").read_text())
    # the same run exported to ONNX, run by onnxruntime in fp32 and int8 (textlstm export)
    exports = {}
    for kind, flags in (("fp32", []), ("int8", ["--quantize", "int8"])):
        exports[kind] = work / f"onnx-{kind}"
        toolkit(["export", str(run), "-o", str(exports[kind]), *flags], ROOT)
    cpu = ["--device", args.device]
    modes = {
        "fp32": [str(run), *cpu, "--precision", "fp32"],
        **({bundled: [str(run), *cpu]} if bundled != "fp32" else {}),
        "int8": [str(run), *cpu, "--quantize", "int8"],
        "onnxruntime fp32": [str(exports["fp32"])],
        "onnxruntime int8": [str(exports["int8"])],
    }
    predicted: dict[str, list[dict]] = {m: [] for m in modes}
    accuracy: dict[str, float] = {}
    got: dict[str, list[str]] = {}
    ref_inference = []
    for rep in range(repeats):
        for mode, args in modes.items():
            target = work / f"p-{mode.replace(' ', '-')}.jsonl"
            stats, _ = toolkit(
                ["predict", args[0], str(text_file), "-o", str(target), *args[1:]], ROOT
            )
            predicted[mode].append(stats)
            got[mode] = labels_of(target)
            accuracy[mode] = accuracy_of(got[mode], test_labels, names)
        ref_inference.append(
            reference_inference(
                test_texts, prepared.encoder, len(prepared.vocab), cfg, max_length, device
            )
        )
        print(f"inference repetition {rep + 1} of {repeats} done", flush=True)
    test_tokens = sum(len(r) for r in prepared.encoder.encode(test_texts))

    rates.append(matmul_gflops(device))
    gflops = max(rates)
    floor = gflops * 1e9 / flops

    def median(values, index=None):
        return statistics.median(v[index] if index is not None else v for v in values)

    ref_tps = median(ref, 0)
    keras_tps = keras_row["train_tokens_per_second"] if keras_row else None
    ref_texts = median(ref_inference, 0)
    keras_texts = keras_row["predict_texts_per_second"] if keras_row else None

    def ratio(value: float, against: float | None) -> str:
        return f"{value / against:>8.2f}x" if against else f"{'-':>9s}"

    print()
    print(
        f"fp32 matmul samples {', '.join(f'{r:,.0f}' for r in rates)} GFLOP/s; the highest sets "
        f"the FLOP floor: {floor:,.0f} tokens/s"
    )
    print(
        f"training: medians of {train_repeats}; inference: medians of {repeats}; "
        f"ratios against the tutorial-style PyTorch reference and the Keras model"
    )
    print(f"{'row':52s} {'value':>12s} {'vs PyTorch':>10s} {'vs Keras':>9s} {'floor':>7s}")
    print(
        f"{'training tokens/s, PyTorch reference':52s} {ref_tps:>12,.0f} {'':>10s} "
        f"{'':>9s} {ref_tps / floor:>7.1%}"
    )
    if keras_tps:
        print(
            f"{'training tokens/s, Keras (tensorflow-cpu)':52s} {keras_tps:>12,.0f} {'':>10s} "
            f"{'':>9s} {keras_tps / floor:>7.1%}"
        )
    for precision in precisions:
        tps = median(ours[precision], 0)
        label = f"training tokens/s, textlstm {precision}" + (
            " (recipe)" if precision == bundled else ""
        )
        print(
            f"{label:52s} {tps:>12,.0f} {ratio(tps, ref_tps):>10s} {ratio(tps, keras_tps)} "
            f"{tps / floor:>7.1%}"
        )
    print(
        f"{'seconds per epoch: reference / Keras':52s} {median(ref, 1):>12,.1f} "
        f"{keras_row['train_seconds'] if keras_row else float('nan'):>10,.1f}"
    )
    for precision in precisions:
        print(
            f"{'seconds per epoch, textlstm ' + precision:52s} {median(ours[precision], 1):>12,.1f}"
        )
    print(f"{'predict texts/s, PyTorch reference (in-process)':52s} {ref_texts:>12,.0f}")
    if keras_texts:
        print(f"{'predict texts/s, Keras model.predict':52s} {keras_texts:>12,.0f}")
    fp32_texts = None
    for mode in modes:
        seconds = statistics.median(p["seconds"] for p in predicted[mode])
        texts = len(test_texts) / seconds
        fp32_texts = fp32_texts or texts
        label = f"predict texts/s, textlstm {mode} (command)"
        print(
            f"{label:52s} {texts:>12,.0f} {ratio(texts, ref_texts):>10s} "
            f"{ratio(texts, keras_texts)}  {texts / fp32_texts:.2f}x fp32, "
            f"{test_tokens / seconds:,.0f} tokens/s, accuracy {accuracy[mode]:.2%}"
            + agreement(got[mode], got["fp32"])
        )
    print(f"{'peak RSS, training (MB)':52s} {train_rss:>12,.0f}")
    print(
        f"{'peak RSS, predict (MB)':52s} "
        f"{max(p['maxrss_mb'] for m in modes for p in predicted[m]):>12,.0f}"
    )
    if keras is None:
        print(f"Keras rows skipped: {why}")
    elif keras_row:
        print(f"Keras: tensorflow {keras_row['tensorflow']}, keras {keras_row['keras']}")


if __name__ == "__main__":
    main()
