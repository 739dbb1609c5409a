"""Token ids in, padded batches out.

Training batches are length-bucketed: the data is shuffled, cut into buckets of ``bucket_size``
batches, each bucket is sorted by length and cut into batches, and the batch order is shuffled
again. Each batch then holds texts of similar length, so almost no compute goes to padding, while
which texts share a batch still changes every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from textlstm.text.vocab import PAD_ID, Ragged


def lengths_of(ids: Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(ids, Ragged):
        return ids.lengths
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    bucket_size: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """An epoch's batches. ``weights`` (one per row, summing to 1): the epoch's rows are drawn
    with replacement at these chances instead of each row once."""
    if weights is None:
        order = rng.permutation(len(lengths))
    else:
        order = rng.choice(len(lengths), size=len(lengths), replace=True, p=weights)
    span = batch_size * bucket_size
    batches: list[np.ndarray] = []
    for start in range(0, len(order), span):
        bucket = order[start : start + span]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Each row's chance (summing to 1) for a balanced sampler: every class is drawn as often
    as every other, its rows alike."""
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return weights / weights.sum()


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Longest first, for evaluation and prediction (callers restore the input order)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(ids: Sequence[np.ndarray], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the selected rows: tokens (batch, max_len) and lengths (batch,)."""
    lengths = np.fromiter((len(ids[r]) for r in rows), dtype=np.int64, count=len(rows))
    tokens = np.full((len(rows), int(lengths.max())), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : lengths[i]] = ids[r]
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def iterate(
    ids: Sequence[np.ndarray], batches: list[np.ndarray]
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    for rows in batches:
        tokens, lengths = collate(ids, rows)
        yield rows, tokens, lengths


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch tensor on ``device``. For a GPU it is copied from pinned memory without blocking,
    so the CPU goes on to collate the next batch while the copy and the step run."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
