"""Texts as streams for truncated backpropagation through time.

Each epoch joins the training texts, in an order drawn from the run's generator, into one stream
of ids, cut into ``batch_size`` parallel columns that the model reads ``bptt`` tokens at a time,
carrying its state from one window to the next. The backward model reads the same stream
reversed, so it learns to read each text from its end, as the classifier's backward half does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from textlstm.text.vocab import PAD_ID, Ragged


@dataclass
class Window:
    """One step: inputs and next-token targets (bptt, batch) for each direction."""

    inputs: list[torch.Tensor]
    targets: list[torch.Tensor]

    @property
    def tokens(self) -> int:
        return int(self.targets[0].numel())

    def columns(self, rows: np.ndarray) -> Window:
        """The window's columns ``rows`` (one rank's share of a distributed step)."""
        index = torch.from_numpy(rows)
        return Window(
            [x.index_select(1, index) for x in self.inputs],
            [y.index_select(1, index) for y in self.targets],
        )


def join(ids: Sequence[np.ndarray], order: np.ndarray | None = None) -> np.ndarray:
    """The texts' ids as one int64 stream, in ``order`` (all of them in turn by default)."""
    if order is None and isinstance(ids, Ragged):
        return ids.flat().astype(np.int64)
    picked = ids if order is None else [ids[i] for i in order]
    if not picked:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(picked).astype(np.int64, copy=False)


def width(tokens: int, batch_size: int) -> int:
    """The columns a stream of ``tokens`` is cut into: ``batch_size``, fewer for a tiny stream."""
    return max(1, min(batch_size, tokens // 2))


def columns(stream: np.ndarray, batch_size: int) -> np.ndarray:
    """(steps, batch) : the stream cut into ``batch_size`` equal columns, the tail dropped."""
    batch_size = width(len(stream), batch_size)
    steps = len(stream) // batch_size
    return stream[: steps * batch_size].reshape(batch_size, steps).T


def steps_in(tokens: int, batch_size: int, bptt: int) -> int:
    """The windows an epoch of ``tokens`` tokens has."""
    batch_size = width(tokens, batch_size)
    rows = tokens // batch_size
    return max(0, -(-(rows - 1) // bptt))


def windows(
    stream: np.ndarray, batch_size: int, bptt: int, both: bool, first: int = 0
) -> Iterator[Window]:
    """The epoch's windows from window ``first`` on (a resumed run skips those it has done)."""
    forward = torch.from_numpy(np.ascontiguousarray(columns(stream, batch_size)))
    backward = torch.from_numpy(np.ascontiguousarray(columns(stream[::-1], batch_size)))
    rows = forward.shape[0]
    for start in range(first * bptt, rows - 1, bptt):
        end = min(start + bptt, rows - 1)
        parts = [forward] + ([backward] if both else [])
        yield Window(
            [part[start:end] for part in parts], [part[start + 1 : end + 1] for part in parts]
        )


def proposal(stream: np.ndarray, vocab_size: int) -> torch.Tensor:
    """log q (vocab,): the sampled softmax's proposal, unigram counts^0.75 (word2vec's), each word
    counted at least once so that every word can be drawn; never <pad>."""
    counts = np.bincount(stream, minlength=vocab_size)[:vocab_size].astype(np.float64) + 1.0
    counts[PAD_ID] = 0.0
    weights = counts**0.75
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.log(weights / weights.sum())).float()
