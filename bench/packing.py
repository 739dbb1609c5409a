"""Masked padded batches (textlstm's model) against packed sequences, same shape, same batches.

Usage: python bench/packing.py [DATA_ROOT]   (DATA_ROOT holds stanfordnlp/imdb; default
TEXTLSTM_DATA_DIR). Trains each variant for the same steps, interleaved, and prints the median
tokens/s of forward + backward over 3 repetitions.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textlstm.data import column
from textlstm.model.batching import bucketed_batches, collate, lengths_of
from textlstm.model.classifier import LSTMClassifier
from textlstm.recipe import load_recipe
from textlstm.training import prepare


class PackedBiLSTM(nn.Module):
    """The same shape, written with pack_padded_sequence (the usual alternative)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, classes: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))
        return self.head(out.amax(dim=1))  # (batch, classes)


def tokens_per_second(model: nn.Module, ids, labels, batches) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens, start = 0, time.perf_counter()
    for rows in batches:
        x, lengths = collate(ids, rows)
        loss = nn.functional.cross_entropy(model(x, lengths), torch.from_numpy(labels[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tokens += int(lengths.sum())
    return tokens / (time.perf_counter() - start)


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else None
    recipe = load_recipe("recipes/imdb.toml")
    prepared = prepare(recipe, root)
    ids = prepared.ids["train"][:3000]
    labels = np.asarray(column(prepared.splits["train"], "label"))[:3000]
    cfg = recipe.model.model_copy(update={"embedding_dropout": 0.0, "dropout": 0.0})
    models = {
        "masked padded (textlstm)": LSTMClassifier(cfg, len(prepared.vocab), 2),
        "packed sequences": PackedBiLSTM(
            len(prepared.vocab), cfg.embedding_dim, cfg.hidden_size, 2
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in models}
    for rep in range(3):
        batches = bucketed_batches(lengths_of(ids), 64, 100, np.random.default_rng(rep))
        for name, model in models.items():
            results[name].append(tokens_per_second(model, ids, labels, batches))
    print(
        f"{len(ids):,} IMDB reviews, BiLSTM({cfg.hidden_size}), emb {cfg.embedding_dim}, "
        f"max_length {recipe.tokenizer.max_length}, batch 64, {torch.get_num_threads()} threads"
    )
    base = statistics.median(results["packed sequences"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:10,.0f} tokens/s   x{median / base:.2f}")


if __name__ == "__main__":
    main()
