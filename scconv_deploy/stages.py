"""Named pipeline stages: their times, progress for a listener, and errors that say where they happened.

A long command (export, golden data, calibration, checks) runs as stages::

    stages = Stages(listener)
    with stages.stage("golden data", total=len(x)) as advance:
        ...
        advance(16)            # 16 more items done

``Stages.times`` keeps each stage's wall time for the report. A listener (the CLI's progress
display; ``None`` is silent) is told when a stage starts, advances and ends. An exception that is
not one of the toolkit's deliberate errors becomes ``InternalError`` naming the stage, with the
original as its cause: the CLI prints one line and exits 3.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from .errors import InternalError, ScconvDeployError


class StageListener(Protocol):
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, name: str, done: int) -> None: ...
    def end(self, name: str, seconds: float, ok: bool) -> None: ...


class Stages:
    """Runs named stages and remembers their times (see the module docstring)."""

    def __init__(self, listener: StageListener | None = None) -> None:
        self.listener = listener
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        listener = self.listener

        def advance(done: int) -> None:
            if listener is not None:
                listener.advance(name, done)

        if listener is not None:
            listener.start(name, total)
        start = time.perf_counter()
        ok = False
        try:
            yield advance
            ok = True
        except (ScconvDeployError, KeyboardInterrupt):
            raise
        except Exception as err:
            raise InternalError(name, err) from err
        finally:
            seconds = time.perf_counter() - start
            self.times[name] = round(self.times.get(name, 0.0) + seconds, 3)
            if listener is not None:
                listener.end(name, seconds, ok)
