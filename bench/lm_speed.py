"""Language-model pretraining speed: `textlstm pretrain` against a plain PyTorch LSTM language
model of the same size written the obvious way, on the same IMDB token stream, in one run.

Usage: python bench/lm_speed.py [DATA_ROOT] [--minutes M] [--rounds N]
DATA_ROOT holds stanfordnlp/imdb (default: TEXTLSTM_DATA_DIR).

The reference has the shape of PyTorch's `word_language_model` example: Embedding -> nn.LSTM ->
Linear over the whole vocabulary (a full softmax, untied weights), cross-entropy, batches of
`bptt` tokens cut from `batch_size` parallel columns of the stream, the state carried between
windows, Adam. The toolkit row is `textlstm.pretrain` on recipes/imdb-lm.toml with one direction
(the reference has one), so both read the same tokens with the same embedding and hidden sizes;
a second toolkit row trains both directions, as the recipe does, and on a CPU with native bf16
(avx512_bf16/AMX) a third trains the forward model under bf16 autocast. Each row trains for
--minutes (rounds interleaved, medians reported) and then gives its perplexity on the same
held-out text, scored with the full softmax: tokens/s alone would flatter a model that learns
less per token.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from textlstm.lm import pretrain
from textlstm.lm.corpus import prepare_corpus
from textlstm.lm.streams import join, windows
from textlstm.recipe import load_recipe
from textlstm.runtime import bf16_support

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "imdb-lm.toml"


class PlainLM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state):  # x (seq, batch)
        out, state = self.lstm(self.embedding(x), state)
        return self.decoder(out), state  # (seq, batch, vocab)


def plain_run(corpus, recipe, seconds: float) -> tuple[float, float]:
    """tokens/s and held-out perplexity of the reference after ``seconds`` of training."""
    torch.manual_seed(recipe.seed)
    vocab = len(corpus.encoder.vocab)
    cfg = recipe.pretrain
    model = PlainLM(vocab, recipe.model.embedding_dim, recipe.model.hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    criterion = nn.CrossEntropyLoss()
    state, tokens, began = None, 0, time.perf_counter()
    for window in windows(join(corpus.train), cfg.batch_size, cfg.bptt, both=False):
        logits, state = model(window.inputs[0], state)
        state = tuple(s.detach() for s in state)
        loss = criterion(logits.reshape(-1, vocab), window.targets[0].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        tokens += window.tokens
        if time.perf_counter() - began >= seconds:
            break
    rate = tokens / (time.perf_counter() - began)
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.inference_mode():
        for window in windows(corpus.heldout, cfg.batch_size, cfg.bptt, both=False):
            logits, state = model(window.inputs[0], state)
            total += float(
                nn.functional.cross_entropy(
                    logits.reshape(-1, vocab), window.targets[0].reshape(-1), reduction="sum"
                )
            )
            count += window.tokens
    return rate, math.exp(total / count)


def toolkit_run(recipe, data: str, minutes: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        result = pretrain(recipe, out, data, device="cpu", max_minutes=minutes)
    epoch = result.epochs[-1]
    return epoch.tokens_per_second, epoch.perplexity


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--minutes", type=float, default=2.0, help="training per row and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not args.data or not (Path(args.data) / "stanfordnlp" / "imdb").is_dir():
        raise SystemExit("bench/lm_speed.py needs DATA_ROOT holding stanfordnlp/imdb")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    both = load_recipe(RECIPE)
    forward = load_recipe(RECIPE, ['pretrain.directions="forward"'])
    bf16 = load_recipe(RECIPE, ['pretrain.directions="forward"', 'train.precision="bf16"'])
    with_bf16 = bf16_support(torch.device("cpu")) == "native"
    corpus = prepare_corpus(forward, args.data)
    print(
        f"{corpus.tokens:,} tokens, {len(corpus.encoder.vocab):,} words, embedding "
        f"{forward.model.embedding_dim}, hidden {forward.model.hidden_size}; "
        f"{args.minutes:g} min per row, {args.rounds} rounds, {torch.get_num_threads()} threads"
    )
    rows: dict[str, list[tuple[float, float]]] = {"plain": [], "forward": [], "both": []}
    if with_bf16:
        rows["bf16"] = []
    for round_ in range(args.rounds):
        rows["plain"].append(plain_run(corpus, forward, args.minutes * 60))
        rows["forward"].append(toolkit_run(forward, args.data, args.minutes))
        rows["both"].append(toolkit_run(both, args.data, args.minutes))
        if with_bf16:
            rows["bf16"].append(toolkit_run(bf16, args.data, args.minutes))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1][0]:,.0f}" for k, v in rows.items()))
    reference = statistics.median(rate for rate, _ in rows["plain"])
    names = {
        "plain": "plain PyTorch LM (full softmax, untied)",
        "forward": "textlstm pretrain, forward only",
        "both": "textlstm pretrain, both directions",
        "bf16": "textlstm pretrain, forward only, bf16 autocast",
    }
    print("\n| model | tokens/s | vs plain | held-out perplexity after the budget |")
    print("|---|---|---|---|")
    for key, values in rows.items():
        rate = statistics.median(r for r, _ in values)
        ppl = statistics.median(p for _, p in values)
        print(f"| {names[key]} | {rate:,.0f} | {rate / reference:.2f}x | {ppl:,.1f} |")
    print("(both directions: stream tokens/s, each read by two models)")
    if not with_bf16:
        print("(no bf16 row: this CPU has no native bf16 (avx512_bf16 or AMX))")


if __name__ == "__main__":
    main()
