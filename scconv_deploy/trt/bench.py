"""Latency percentiles and throughput over batch sizes, for a TensorRT plan or an ONNX file.

One harness for both: warm-up runs, then ``iterations`` rounds in which every batch size runs
once, in an order that rotates each round, so clock or temperature drift hits all sizes alike.
A plan is timed with CUDA events around the engine's work on the GPU (inputs already on the
device); an ONNX file with the wall clock around ONNX Runtime's CPU ``run``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import Staging
from ..deps import require_onnxruntime
from ..errors import EngineError
from .cuda import cuda_device
from .env import require_tensorrt
from .onnx_file import export_shapes, load_onnx, read_inputs, read_metadata
from .profile import dims_text
from .runner import load_engine


@dataclass(frozen=True)
class BenchRow:
    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # samples per second: batch / mean latency


@dataclass
class BenchResult:
    model: str
    backend: str  # "tensorrt" or "onnxruntime-cpu"
    device: str
    clock: str  # what the latencies measure
    sample_shape: list[int]  # one sample's shape (the batch axis left out)
    warmup: int
    rows: list[BenchRow]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        with Staging(EngineError) as staging:
            staging.temp_for(Path(path)).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def __str__(self) -> str:
        head = (
            f"{self.model}: {self.backend} on {self.device}, sample {dims_text(tuple(self.sample_shape))}, "
            f"{self.warmup} warm-up + {self.rows[0].iterations if self.rows else 0} timed runs per batch "
            f"size, interleaved ({self.clock})"
        )
        lines = [
            head,
            f"{'batch':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'samples/s':>11}",
        ]
        for r in self.rows:
            lines.append(
                f"{r.batch:>6} {r.p50_ms:>9.3f} {r.p90_ms:>9.3f} {r.p99_ms:>9.3f} {r.mean_ms:>9.3f} "
                f"{r.throughput:>11.1f}"
            )
        return "\n".join(lines)


def measure(timers: dict[int, Callable[[], float]], iterations: int, warmup: int) -> list[BenchRow]:
    """Run every timer (seconds per call) ``warmup`` times, then ``iterations`` interleaved rounds."""
    if iterations < 1 or warmup < 0:
        raise EngineError(f"iterations ({iterations}) must be positive and warm-up ({warmup}) not negative")
    sizes = list(timers)
    for size in sizes:
        for _ in range(warmup):
            timers[size]()
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(iterations):
        shift = i % len(sizes)
        for size in sizes[shift:] + sizes[:shift]:
            times[size].append(timers[size]())
    rows = []
    for size in sizes:
        ms = np.asarray(times[size]) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        mean = float(ms.mean())
        rows.append(
            BenchRow(
                size, iterations, float(p50), float(p90), float(p99), mean, size / mean * 1e3 if mean else 0.0
            )
        )
    return rows


def _check_sizes(batch_sizes: list[int]) -> list[int]:
    if not batch_sizes or min(batch_sizes) < 1 or len(set(batch_sizes)) != len(batch_sizes):
        raise EngineError(f"batch sizes {batch_sizes}: give distinct positive sizes, e.g. 1,8")
    return list(batch_sizes)


def _random(shape: tuple[int, ...], dtype: np.dtype | str, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def bench_onnx(
    path: str | Path, batch_sizes: list[int], iterations: int = 100, warmup: int = 10
) -> BenchResult:
    """ONNX Runtime on the CPU (its default threads and graph optimisations), wall clock per ``run``."""
    ort = require_onnxruntime()

    path = Path(path)
    sizes = _check_sizes(batch_sizes)
    model = load_onnx(path)
    inputs = read_inputs(model)
    exported = export_shapes(inputs, read_metadata(model))
    samples: dict[str, tuple[int, ...]] = {}
    for inp in inputs:
        dims = []
        for axis, dim in enumerate(inp.dims[1:], start=1):
            if isinstance(dim, str) and inp.name not in exported:
                raise EngineError(
                    f"{path}: input '{inp.name}' has a dynamic {dim!r} and no recorded export shape"
                )
            dims.append(dim if isinstance(dim, int) else exported[inp.name][axis])
        if isinstance(inp.dims[0], int) and sizes != [inp.dims[0]]:
            raise EngineError(
                f"{path}: input '{inp.name}' has a static batch of {inp.dims[0]}: bench --batch-sizes "
                f"{inp.dims[0]}, or re-export with --dynamic batch"
            )
        samples[inp.name] = tuple(dims)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception kinds for unloadable graphs
        raise EngineError(f"{path}: ONNX Runtime cannot load it: {str(err).strip().splitlines()[0]}") from err
    dtypes = {i.name: i.dtype for i in inputs}

    def timer(size: int) -> Callable[[], float]:
        feed = {n: _random((size, *s), dtypes[n], seed=size) for n, s in samples.items()}

        def run() -> float:
            start = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - start

        return run

    rows = measure({size: timer(size) for size in sizes}, iterations, warmup)
    device = f"{os.cpu_count()} logical CPU cores (onnxruntime {ort.__version__})"
    sample = list(next(iter(samples.values())))
    return BenchResult(str(path), "onnxruntime-cpu", device, "wall clock per run", sample, warmup, rows)


def bench_plan(
    path: str | Path,
    batch_sizes: list[int],
    iterations: int = 100,
    warmup: int = 10,
    *,
    check_compatibility: bool = True,
) -> BenchResult:
    """A TensorRT plan at its profile's optimal sample shape, timed with CUDA events (inputs on device)."""
    sizes = _check_sizes(batch_sizes)
    with load_engine(path, check_compatibility=check_compatibility) as engine:
        timers = {}
        for size in sizes:
            feed = {}
            for name, spec in engine.inputs.items():
                shape = (size, *spec.opt[1:])
                if not spec.admits(shape):
                    raise EngineError(
                        f"batch {size} is outside the engine's profile for '{name}' "
                        f"(batch {spec.min[0]} to {spec.max[0]}): rebuild with --batch"
                    )
                feed[name] = _random(shape, spec.dtype, seed=size)
            timers[size] = engine.timer(feed)
        rows = measure(timers, iterations, warmup)
        sample = list(next(iter(engine.inputs.values())).opt[1:])
    device = f"{cuda_device()}, TensorRT {require_tensorrt().__version__}"
    clock = "CUDA events around one inference on the engine's stream (inputs on the device)"
    return BenchResult(str(path), "tensorrt", device, clock, sample, warmup, rows)
