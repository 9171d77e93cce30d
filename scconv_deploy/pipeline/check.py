"""The FP32 check of an export: golden data from PyTorch, the shipped graph verified against it.

Golden data comes from the export form run in PyTorch (outputs and decisions of one pass); the
shipped ONNX is verified with PyTorch's decisions fed in (every sample compared) and as deployed
(``verify.verify_onnx``). With a dynamic height and width the same is done at a second spatial
size: the seed norm's unbiased correction is the graph's only shape-dependent value. At both sizes
the gate values themselves are held (``Tolerance.gate_atol``): a wrong correction moves them by
less than the tie guard, so flips alone would not show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..golden import Golden
from ..stages import Stages
from ..tap import conversion_error, make_golden
from ..verify import VerificationResult, verify_onnx
from ..verify.tolerance import Tolerance
from .network import Network

OTHER_SIZE_STEP = 32  # pixels added to H and W for the second spatial size
OTHER_SIZE_SAMPLES = 4


@dataclass
class Fp32Check:
    golden: Golden
    verification: VerificationResult
    conversion: dict[str, Any]  # the original network against the export form, in PyTorch
    other_sizes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verification.passed and all(o["passed"] for o in self.other_sizes)


def check_fp32(
    shipped: onnx.ModelProto,
    network: Network,
    inputs: np.ndarray,
    tolerance: Tolerance,
    tie_guard: float,
    stages: Stages,
    *,
    other_size: bool,
    expose: list[str] | None = None,
) -> Fp32Check:
    """Golden data on ``inputs``, and the shipped graph verified against it (see the module docstring);
    ``expose`` names tensors read in the decision-forced run (``verification.runs["forced"].tensors``)."""
    names = network.output_names
    with stages.stage("golden data", total=len(inputs)) as advance:
        golden = make_golden(network.deployed, inputs, names, tie_guard, progress=advance)
    with stages.stage("original network"):
        conversion = conversion_error(network.original, golden)
    with stages.stage("check", total=2 * len(inputs)) as advance:
        verification = verify_onnx(
            shipped, golden, precision="fp32", tolerance=tolerance, expose=expose, progress=advance
        )
    check = Fp32Check(golden, verification, conversion)
    if other_size:
        with stages.stage("check at another size"):
            check.other_sizes.append(_other_size(shipped, network, golden, tolerance))
    return check


def _other_size(shipped: onnx.ModelProto, network: Network, golden: Golden, tolerance: Tolerance) -> dict:
    c, h, w = golden.inputs.shape[1:]
    shape = (OTHER_SIZE_SAMPLES, c, h + OTHER_SIZE_STEP, w + OTHER_SIZE_STEP)
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    sub = make_golden(network.deployed, x, golden.output_names, golden.tie_guard)
    result = verify_onnx(shipped, sub, precision="fp32", tolerance=tolerance)
    errors = result.forced.gate_errors if result.forced is not None else None
    return {
        "shape": list(shape),
        "passed": result.passed,
        "compared": result.compared,
        "gate_error": max((e.mean_abs for e in errors), default=0.0) if errors is not None else None,
        "reasons": result.reasons,
    }
