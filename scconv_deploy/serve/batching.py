"""Dynamic batching: requests that arrive close together run as one model execution.

The collector takes an execution slot first, then the oldest waiting request, then waits up to
``timeout`` for more until ``max_batch`` rows are together (a request is never split; one
larger than ``max_batch`` runs alone). While every slot is busy requests queue up, so batches
grow with load. Requests whose per-row shapes differ (dynamic H×W) run as separate executions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future[Outputs]


class DynamicBatcher:
    """Collects ``submit``-ted inputs and runs them through ``execute`` in batches."""

    def __init__(
        self,
        execute: Callable[[np.ndarray], Awaitable[Outputs]],
        slots: asyncio.Semaphore,
        max_batch: int,
        timeout_s: float,
    ) -> None:
        self._execute = execute
        self._slots = slots
        self._max_batch = max_batch
        self._timeout = timeout_s
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop collecting, let running executions finish, fail what still waits."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, x: np.ndarray) -> Outputs:
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(x, future))
        self._arrived.set()
        return await future

    def _rows(self) -> int:
        return sum(len(p.x) for p in self._queue)

    async def _next_batch(self) -> list[_Pending]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self._timeout
        while self._rows() < self._max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch = [self._queue.popleft()]
        rows = len(batch[0].x)
        while self._queue and rows + len(self._queue[0].x) <= self._max_batch:
            rows += len(self._queue[0].x)
            batch.append(self._queue.popleft())
        return batch

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            groups: dict[tuple, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault((pending.x.dtype, pending.x.shape[1:]), []).append(pending)
            for group in groups.values():
                await self._run_group(group)
        finally:
            self._slots.release()

    async def _run_group(self, group: list[_Pending]) -> None:
        try:
            x = group[0].x if len(group) == 1 else np.concatenate([p.x for p in group])
            outputs = await self._execute(x)
            if any(len(v) != len(x) for v in outputs.values()):
                raise RuntimeError("an output's first dimension is not the batch: serve without --max-batch")
        except Exception as err:
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(err)
            return
        start = 0
        for pending in group:
            n = len(pending.x)
            if not pending.future.done():  # a waiter cancelled (client gone) leaves a done future
                pending.future.set_result({k: v[start : start + n] for k, v in outputs.items()})
            start += n
