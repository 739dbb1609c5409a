"""The two directions of a bidirectional recurrent layer side by side, each on its own thread.

One time step of a fused CPU LSTM at the sizes textlstm trains (64-256 units, batches of 64) is
a matrix product too small for two threads to share well: every step ends at a barrier where
each thread waits for the other, and in bf16 two threads ran a direction only 0.95-1.35x as
fast as one (bench/README.md). The forward and backward directions, though, do not depend on
each other until they are joined. So inside ``threads.two_lanes`` (training epochs and
inference of a bidirectional model on a CPU of two threads or more) each direction runs as a
lane of its own, each on half the threads: the backward one (the longer: it reverses its input
too) in the calling thread, the forward one in a worker thread, whose start costs a hand-over.
What a direction does before the two are joined (the reversal of its input, the embedding
lookup, its pooling) runs in its lane. In the backward pass each lane's gradients are taken
from its own graph, again side by side. The values are those of one direction after the
other, up to the order of floating-point sums.

Nothing here draws random numbers, so the dropout masks, drawn in the calling thread between
lanes, stay those of a sequential run. The lanes run one after the other instead outside
``two_lanes``, on one thread, on a GPU (cuDNN fills it), and while a graph is traced or exported
(ONNX, ``torch.compile``), which must see the plain layers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textlstm import threads

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_worker() -> None:
    """A forked child has no copy of the worker thread: it makes its own when it needs one."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_worker)


def _worker() -> ThreadPoolExecutor:
    """The one worker thread, made on first use and kept for the process's life."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="textlstm-lane")
        return _pool


@dataclass(frozen=True)
class Lane:
    """What one direction does with its input: ``run(x) -> out``, and the parameters it uses
    (their gradients are taken in the lane)."""

    run: Callable[[torch.Tensor], torch.Tensor]
    params: Sequence[torch.Tensor]


def two_lanes_for(model: nn.Module, device: torch.device) -> AbstractContextManager[None]:
    """``threads.two_lanes`` for the epochs or the inference of ``model`` on ``device``: on where
    it is a bidirectional recurrent model on a CPU."""
    cfg = getattr(model, "cfg", None)
    return threads.two_lanes(device.type == "cpu" and bool(getattr(cfg, "bidirectional", False)))


def lanes_of(model: nn.Module, device: torch.device) -> tuple[int, int] | None:
    """The threads of the two lanes ``model``'s epochs or inference would run on here, if any:
    for the device line and ``meta.json``."""
    with two_lanes_for(model, device):
        return lanes_here(device)


def lanes_here(device: torch.device) -> tuple[int, int] | None:
    """The threads of the calling lane and of the worker's when two lanes may run here."""
    if device.type != "cpu" or tracing():
        return None
    return threads.lanes()


def tracing() -> bool:
    """Whether a graph is being traced, scripted, compiled or exported."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.onnx.is_in_onnx_export()
    )


class _Modes:
    """The calling thread's thread-local modes, entered again in the worker thread."""

    def __init__(self) -> None:
        self.grad = torch.is_grad_enabled()
        self.inference = torch.is_inference_mode_enabled()
        self.autocast = torch.is_autocast_enabled("cpu")
        self.dtype = torch.get_autocast_dtype("cpu")

    def run(self, count: int, work: Callable[[], Any]) -> Any:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        with (
            torch.inference_mode(self.inference),
            torch.set_grad_enabled(self.grad),
            torch.autocast("cpu", dtype=self.dtype, enabled=self.autocast),
        ):
            return work()


def _at_once(
    counts: tuple[int, int], first: Callable[[], Any], second: Callable[[], Any]
) -> tuple[Any, Any]:
    """``second`` in the worker thread, on ``counts[1]`` threads, while ``first`` runs here."""
    job: Future[Any] = _worker().submit(_Modes().run, counts[1], second)
    try:
        done = first()
    finally:
        wait((job,))  # the worker must not outlive this step's data, even when this side failed
    return done, job.result()


def both(
    first: Callable[[], Any], second: Callable[[], Any], device: torch.device
) -> tuple[Any, Any]:
    """``first()`` and ``second()``: side by side where two lanes run here, else in turn."""
    counts = lanes_here(device)
    if counts is None:
        return first(), second()
    return _at_once(counts, first, second)


def halves(work: Callable[[int], None]) -> None:
    """``work(0)`` and ``work(1)`` on the CPU: side by side where two lanes run, else in turn."""
    both(lambda: work(0), lambda: work(1), torch.device("cpu"))


def run_both(
    first: Lane, second: Lane, first_in: torch.Tensor, second_in: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``first.run(first_in)`` and ``second.run(second_in)``, side by side where two lanes may
    run (the inputs may be one tensor: its gradient is then the sum of both lanes')."""
    counts = lanes_here(first_in.device)
    if counts is None:
        return first.run(first_in), second.run(second_in)
    if not torch.is_grad_enabled():
        # the second lane here, the first in the worker (see _Both.forward)
        second_out, first_out = _at_once(
            counts, lambda: second.run(second_in), lambda: first.run(first_in)
        )
        return first_out, second_out
    outputs = _Both.apply(
        (first, second, counts), first_in, second_in, *first.params, *second.params
    )
    return outputs[0], outputs[1]


class _Graph:
    """One lane's graph, built on a detached copy of its input: its gradients are taken from it
    in the backward pass."""

    def __init__(self, lane: Lane, x: torch.Tensor) -> None:
        self.params = list(lane.params)
        self.input = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            self.output = lane.run(self.input)

    def gradients(self, grad: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The gradients of the input and the parameters, None where none is needed. The graph
        is kept (a second backward through the same step, as adversarial training runs, needs
        it) and goes when the step's graph does."""
        wanted = [t for t in (self.input, *self.params) if t.requires_grad]
        if grad is None or not wanted or self.output.grad_fn is None:
            return [None] * (1 + len(self.params))
        found = iter(torch.autograd.grad(self.output, wanted, grad, retain_graph=True))
        return [next(found) if t.requires_grad else None for t in (self.input, *self.params)]


class _Both(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        spec: tuple[Lane, Lane, tuple[int, int]],
        first_in: torch.Tensor,
        second_in: torch.Tensor,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        first, second, counts = spec
        # the second lane (the backward direction, which reverses its input too) is the longer
        # one: it runs here, the first in the worker, whose start costs a hand-over
        second_graph, first_graph = _at_once(
            counts, lambda: _Graph(second, second_in), lambda: _Graph(first, first_in)
        )
        graphs = (first_graph, second_graph)
        ctx.graphs, ctx.counts = graphs, counts
        return graphs[0].output.detach(), graphs[1].output.detach()

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        first, second = ctx.graphs
        other, done = _at_once(
            ctx.counts, lambda: second.gradients(grads[1]), lambda: first.gradients(grads[0])
        )
        return (None, done[0], other[0], *done[1:], *other[1:])
