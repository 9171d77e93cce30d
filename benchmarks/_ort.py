"""Shared helpers of the latency benchmarks: export to ONNX in memory, ORT sessions, interleaved timing.

Nothing here writes into the repository: the legacy exporter writes to a memory buffer, the dynamo
exporter into a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.export import Dim

EXPORTERS = ("legacy", "dynamo")
THREADS = 2


def export_onnx(module: torch.nn.Module, x: torch.Tensor, exporter: str = "legacy") -> tuple[bytes, float]:
    """``module`` exported with dynamic N/H/W (as serialized bytes) and the export's wall time in seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {0: Dim("N"), 2: Dim("H", min=2), 3: Dim("W", min=2)}
            with tempfile.TemporaryDirectory(prefix="scconv_export_") as tmp:
                path = Path(tmp) / "model.onnx"
                torch.onnx.export(
                    module,
                    (x,),
                    str(path),
                    dynamo=True,
                    dynamic_shapes=(dims,),
                    external_data=False,
                    verbose=False,
                )
                data = path.read_bytes()
        elif exporter == "legacy":
            buf = io.BytesIO()
            axes = {"x": {0: "N", 2: "H", 3: "W"}}
            torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], dynamic_axes=axes)
            data = buf.getvalue()
        else:
            raise ValueError(f"exporter {exporter!r}: use one of {EXPORTERS}")
    return data, time.perf_counter() - start


def op_counts(model: bytes | onnx.ModelProto) -> Counter:
    """Histogram of the op types of a graph's nodes (Constant nodes included)."""
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model
    return Counter(n.op_type for n in proto.graph.node)


def session_options(threads: int = THREADS, profile_prefix: str | None = None) -> ort.SessionOptions:
    """The one set of session options every benchmark uses (see :func:`describe_options`)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def describe_options(so: ort.SessionOptions) -> dict[str, object]:
    return {
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": str(so.execution_mode),
        "graph_optimization_level": str(so.graph_optimization_level),
        "providers": ["CPUExecutionProvider"],
    }


def make_session(model: bytes, so: ort.SessionOptions | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(model, so or session_options(), providers=["CPUExecutionProvider"])


@dataclass
class Timing:
    """Per-run latencies (ms) of one candidate."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples, 90))

    @property
    def min(self) -> float:
        """The fastest run: the best estimate of the cost without other processes' load."""
        return min(self.samples)

    def summary(self) -> dict[str, float]:
        return {
            "median_ms": round(self.median, 3),
            "p90_ms": round(self.p90, 3),
            "min_ms": round(self.min, 3),
            "runs": len(self.samples),
        }


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, round-robin (one run of each per repetition), after warm-up.

    The round-robin order rotates with the repetition so that no candidate always follows the same one.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    timings = {name: Timing() for name in names}
    for rep in range(repeats):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            runs[name]()
            timings[name].samples.append((time.perf_counter() - start) * 1e3)
    return timings


def runner(session: ort.InferenceSession, x: np.ndarray) -> Callable[[], object]:
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def environment() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }


def write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
