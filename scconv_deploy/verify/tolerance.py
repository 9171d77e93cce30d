"""How close an artefact's outputs must come to PyTorch's, per precision, once decisions agree.

An element passes when ``|a - g| <= atol + rtol·|g| + stol·S``, where ``S`` is the *channel
scale*: the largest ``|g|`` of that output channel (axis 1) over the check samples. The scale
term is there because reduced-precision error follows the size of the activations, not of the
single element: a detector's output mixes box coordinates (hundreds of pixels) and class
scores (0 to 1) in one tensor, and a score next to zero carries the rounding of its channel.

``gate_atol`` holds the gate values themselves (FP32 only): with the reference's decisions fed in,
each block sees PyTorch's input, so its ``r`` matches PyTorch's to float32 rounding — except where
a group's spread is tiny against its values, and the norm amplifies that rounding (single gates of
an untrained SCConv-ResNet-50 differ by up to 6.5e-6). So the mean over a block is held: 1.1e-7 at
most on the demo models and an untrained SCConv-ResNet-50, against 1.7e-6 to 8.5e-6 for a seed
norm whose unbiased correction a graph simplifier had dropped (``benchmarks/gate_values.py``) — an
error flips alone miss, since it keeps every flip below the tie guard.

``flip_margin`` separates gate flips that precision explains from real ones: with the
reference's decisions fed in, an artefact still computes its own decision at every gate; where
that differs from PyTorch's at a gate whose golden margin ``|r - t|`` is at least
``flip_margin``, the arithmetic before that gate is wrong, not merely rounded. FP32 allows only
ties (margin below the golden tie guard).

Measured with decisions forced, on the demo models' held-out test split (359 images; ONNX
Runtime 1.32 CPU; ``benchmarks/precision.py``): largest error over channel scale 1.6e-6 (FP32),
2.0e-3 (FP16), 3.2e-2 (INT8); largest golden margin of a flipped gate: a tie (FP32), 8.9e-4
(FP16 emulation), 1.9e-2 (INT8). The defaults leave 5x to 50x room above those.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # fraction of |golden| of the element
    atol: float  # absolute
    stol: float  # fraction of the output channel's scale (largest |golden| in the channel)
    flip_margin: float | None  # gate flips at golden margin >= this fail; None: only ties may flip
    # Largest mean |r_artefact - r_PyTorch| of a block with decisions forced, where the golden data
    # keeps gate values; None: not held (reduced precision rounds the block inputs).
    gate_atol: float | None = None

    def allowed(self, golden: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Per element: the largest admissible ``|a - g|``."""
        return self.atol + self.rtol * np.abs(golden) + self.stol * scale

    def with_overrides(
        self, rtol: float | None = None, atol: float | None = None, gate_atol: float | None = None
    ) -> Tolerance:
        """This tolerance with ``rtol``/``atol``/``gate_atol`` replaced where given (``gate_atol``
        only where this precision holds gate values)."""
        return replace(
            self,
            rtol=self.rtol if rtol is None else rtol,
            atol=self.atol if atol is None else atol,
            gate_atol=self.gate_atol if gate_atol is None or self.gate_atol is None else gate_atol,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}, stol {self.stol:g}"


TOLERANCES = {
    "fp32": Tolerance(rtol=1e-4, atol=1e-5, stol=1e-4, flip_margin=None, gate_atol=1e-6),
    "fp16": Tolerance(rtol=1e-2, atol=1e-3, stol=1e-2, flip_margin=1e-2),
    "int8": Tolerance(rtol=1e-1, atol=1e-2, stol=1e-1, flip_margin=1e-1),
}


def tolerance_for(precision: str) -> Tolerance:
    """The default tolerance of ``precision`` ("fp32", "fp16", "int8"; INT8 variants count as int8)."""
    key = precision.lower().split("-")[0]
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance for precision {precision!r}: use one of {', '.join(TOLERANCES)}")
    return TOLERANCES[key]


def channel_scale(golden: np.ndarray) -> np.ndarray:
    """The largest ``|g|`` of each channel (axis 1) over all samples, broadcastable to ``golden``.

    Outputs with fewer than two axes have one scale; a channel that is zero everywhere gets the
    output's scale (a zero scale would demand exactness).
    """
    a = np.abs(golden.astype(np.float64))
    overall = float(a.max()) if a.size else 0.0
    if a.ndim < 2:
        return np.full((1,) * a.ndim, overall)
    axes = tuple(i for i in range(a.ndim) if i != 1)
    scale = a.max(axis=axes, keepdims=True)
    return np.where(scale > 0, scale, overall)
