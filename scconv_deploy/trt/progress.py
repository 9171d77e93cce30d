"""The builder's progress on a stream: ``BuildProgress`` (plain Python) behind a ``trt.IProgressMonitor``."""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO


class BuildProgress:
    """Writes the builder's phases to ``stream`` as they start and finish (the outer ``depth`` levels)."""

    def __init__(self, stream: TextIO, depth: int = 2) -> None:
        self._stream = stream
        self._max_depth = depth
        self._depth: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()  # TensorRT may report from several threads

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            depth = 0 if parent is None else self._depth.get(parent, 0) + 1
            self._depth[phase], self._started[phase] = depth, time.perf_counter()
            if depth < self._max_depth:
                self._write(f"{'  ' * depth}{phase} ({steps} step{'s' * (steps != 1)})")

    def step_complete(self, phase: str, step: int) -> bool:
        """True: go on (False would cancel the build)."""
        return True

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            depth = self._depth.pop(phase, 0)
            seconds = time.perf_counter() - self._started.pop(phase, time.perf_counter())
            if depth == 0:
                self._write(f"{phase}: done in {seconds:.1f} s")

    def _write(self, line: str) -> None:
        print(f"[build] {line}", file=self._stream, flush=True)


def progress_monitor(trt: Any, progress: BuildProgress) -> Any:
    """A ``trt.IProgressMonitor`` forwarding to ``progress`` (subclassing it needs TensorRT)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return Monitor()
