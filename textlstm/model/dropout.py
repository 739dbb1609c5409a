"""Dropout for the embeddings: ``nn.Dropout``'s masks, drawn faster on a CPU.

torch draws a CPU dropout mask one value at a time from its Mersenne Twister, unless it can use
MKL's vectorised generator, which it does on Intel CPUs only. On the AMD EPYC machines here the
embedding dropout of one batch of IMDB reviews (240 x 64 x 64 values) took 6.5 ms, a tenth of
a training step, all of it while the second core waited. This module draws the mask from 16-bit
integers made by NumPy's PCG64 instead (a value is dropped when its integer is below
p x 65,536, so the rate is exact to 1/65,536), in two halves, side by side where two lanes run
(``textlstm.model.directions``), each half seeded from one draw of torch's generator: a run
repeats under ``torch.manual_seed``, whatever the threads, and a resumed run draws the masks the
uninterrupted one would have. Outside training, on a GPU and while a graph is traced or exported
it is ``nn.Dropout`` itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from textlstm.model.directions import halves, tracing

LEVELS = 1 << 16  # the 16-bit integers a value's fate is drawn from


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose training masks on a CPU come from ``drop_mask``. With
    ``inplace=True`` it zeroes and scales its input in place (the embeddings' output, which no
    backward pass reads), with no new tensor of their size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.draws(x.device):
            return super().forward(x)
        return self.drop_with(x, drop_mask(tuple(x.shape), self.p))

    def draws(self, device: torch.device) -> bool:
        """Whether it drops values here with a mask of its own (training, on a CPU)."""
        return self.training and self.p > 0 and device.type == "cpu" and not tracing()

    def drop_with(self, x: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        """x with the values ``dropped`` (bool, x's shape) zeroed and the rest scaled."""
        scale = 1.0 / (1.0 - self.p)
        if self.inplace:
            return x.masked_fill_(dropped, 0.0).mul_(scale)
        return torch.where(dropped, 0.0, x * scale)


def drop_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A bool mask of ``shape``, True (dropped) with probability ``p``: the rows of the first
    dimension in two halves, each from its own seed, drawn at once where two lanes run."""
    seed = int(torch.randint(0, 2**62, (1,)))
    cut = round(p * LEVELS)
    out = np.empty(shape, dtype=bool)
    middle = (shape[0] + 1) // 2 if shape else 0

    def fill(half: int) -> None:
        lo, hi = (0, middle) if half == 0 else (middle, shape[0])
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, half))))
        draws = rng.integers(0, LEVELS, size=(hi - lo, *shape[1:]), dtype=np.uint16)
        np.less(draws, cut, out=out[lo:hi])

    halves(fill)
    return torch.from_numpy(out)
