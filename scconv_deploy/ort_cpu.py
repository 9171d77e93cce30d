"""ONNX Runtime on the CPU for the toolkit's own checks: one session factory, one batched runner.

Checks judge an artefact by what its graph means, not by what this CPU's kernels happen to do:
``optimization="basic"`` keeps Q/DQ nodes as quantize → dequantize → FP32 operator (the
arithmetic TensorRT implements for an explicitly quantized graph), while ``"all"`` lets ONNX
Runtime fuse them into its integer kernels, whose results depend on the instruction set (x86
without VNNI saturates u8s8 products). ``run_batched`` feeds any number of inputs in chunks and
pads the last chunk where the model's batch is fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from .errors import first_line

LEVELS = ("disable", "basic", "extended", "all")


class OrtFailure(RuntimeError):
    """ONNX Runtime refused a graph or failed to run it; the message carries ORT's own first line."""


def cpu_session(model: onnx.ModelProto, *, optimization: str = "all", what: str = "the model"):
    """A quiet CPU ``InferenceSession`` for ``model`` at the given graph optimisation level."""
    import onnxruntime as ort

    if optimization not in LEVELS:
        raise ValueError(f"optimization {optimization!r} is not one of {', '.join(LEVELS)}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own pybind exception types
        raise OrtFailure(f"ONNX Runtime cannot load {what}: {first_line(err)}") from err


def fixed_batch(session, input_name: str) -> int | None:
    """The batch size ``input_name`` is fixed to, or None when its first dimension is dynamic."""
    for arg in session.get_inputs():
        if arg.name == input_name:
            first = arg.shape[0] if arg.shape else None
            return first if isinstance(first, int) and first > 0 else None
    return None


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    if len(x) >= size:
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def run_batched(
    session,
    inputs: np.ndarray,
    input_name: str,
    *,
    extra: Callable[[slice], dict[str, np.ndarray]] | None = None,
    outputs: list[str] | None = None,
    chunk: int = 16,
    progress: Callable[[int], None] | None = None,
    what: str = "the model",
) -> list[np.ndarray]:
    """``outputs`` (default: all) on ``inputs``, in chunks; ``extra(rows)`` adds more inputs per chunk.

    Where the model's batch is fixed the chunk is that batch and the last one is padded with
    zeros (and trimmed from the results). ``progress`` gets the number of samples done per chunk.
    """
    fixed = fixed_batch(session, input_name)
    step = fixed or chunk
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), step):
        rows = slice(start, min(start + step, len(inputs)))
        n = rows.stop - rows.start
        feed = {input_name: inputs[rows], **(extra(rows) if extra is not None else {})}
        if fixed is not None:
            feed = {k: _pad(v, fixed) for k, v in feed.items()}
        try:
            results = session.run(outputs, feed)
        except Exception as err:
            raise OrtFailure(f"ONNX Runtime failed to run {what}: {first_line(err)}") from err
        parts.append([r[:n] for r in results])
        if progress is not None:
            progress(n)
    return [np.concatenate(p) for p in zip(*parts, strict=True)]
