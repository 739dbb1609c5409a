"""Dynamic micro-batching: requests that arrive together share one forward pass.

Each request puts its texts on a queue and waits. One worker takes the first waiting request,
then gathers more until ``max_texts`` texts are collected or ``max_wait`` seconds have passed
since it took the first, runs the model once on all of them (in a thread, so the server keeps
accepting requests meanwhile), and hands each request its own rows. Requests that arrive while
the model is busy wait in the queue and form the next batch, so under load batches grow by
themselves. A request that finds the queue empty after a batch of one request does not wait at
all (no one else is asking), so a lone client pays no latency for batching; otherwise the wait
is at most ``max_wait``. With ``batching=False`` every request
runs alone, one after another: the baseline that batching is measured against.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Predict = Callable[[Sequence[str]], np.ndarray]


@dataclass
class _Waiting:
    texts: list[str]
    done: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    texts: int = 0
    largest: int = 0  # texts in the largest batch so far


class Batcher:
    def __init__(
        self, predict: Predict, max_texts: int = 64, max_wait: float = 0.005, batching: bool = True
    ) -> None:
        self.predict, self.max_texts, self.max_wait = predict, max_texts, max_wait
        self.batching = batching
        self.queue: asyncio.Queue[_Waiting] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.stats = BatchStats()
        self.last_requests = 1  # requests in the last batch: 1 means nobody else was asking

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker

    async def submit(self, texts: list[str]) -> np.ndarray:
        """The probabilities (texts, labels) of ``texts``, from a shared forward pass."""
        assert self.queue is not None, "Batcher.start() first"
        waiting = _Waiting(texts, asyncio.get_running_loop().create_future())
        await self.queue.put(waiting)
        return await waiting.done

    async def _gather(self, first: _Waiting) -> list[_Waiting]:
        assert self.queue is not None
        group, count = [first], len(first.texts)
        if not self.batching:
            return group
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.max_wait if self.last_requests > 1 else 0.0)
        while count < self.max_texts:
            try:
                if self.queue.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    item = await asyncio.wait_for(self.queue.get(), left)
                else:
                    item = self.queue.get_nowait()
            except TimeoutError:
                break
            group.append(item)
            count += len(item.texts)
        return group

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            group = await self._gather(await self.queue.get())
            texts = [text for item in group for text in item.texts]
            try:
                probabilities = await asyncio.to_thread(self.predict, texts)
            except Exception as exc:  # noqa: BLE001  # each waiting request gets the error
                for item in group:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            self._count(len(group), len(texts))
            self.last_requests = len(group)
            start = 0
            for item in group:
                rows = probabilities[start : start + len(item.texts)]
                start += len(item.texts)
                if not item.done.done():  # a client that went away cancelled its future
                    item.done.set_result(rows)

    def _count(self, requests: int, texts: int) -> None:
        stats = self.stats
        stats.batches, stats.requests, stats.texts = (
            stats.batches + 1,
            stats.requests + requests,
            stats.texts + texts,
        )
        stats.largest = max(stats.largest, texts)
