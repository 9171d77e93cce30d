"""ONNX Runtime on the CPU for the toolkit's own checks: one session factory, one batched runner."""

from __future__ import annotations

import numpy as np
import onnx


def cpu_session(model: onnx.ModelProto):
    """A quiet CPU ``InferenceSession`` for ``model`` (checks run on the CPU wherever they run)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_batched(session, inputs: np.ndarray, batch: int | None, input_name: str) -> list[np.ndarray]:
    """All outputs on ``inputs``, in chunks of ``batch`` (padded, then trimmed, when the batch is fixed)."""
    step = batch or 16
    chunks: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), step):
        x = inputs[start : start + step]
        n = len(x)
        if batch is not None and n < batch:
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        chunks.append([o[:n] for o in session.run(None, {input_name: x})])
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
