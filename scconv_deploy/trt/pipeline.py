"""ONNX → verified engine files: the golden data checked first, then the build, the check, the writes.

What ``scconv-trt build`` runs once the plan is settled. The golden data is read and matched to
the plan (same checkpoint, sample shape inside the profile) before the build, so a doomed check
costs no build time. The engine and its sidecar are written as soon as the build returns (a
later failure cannot lose them), then checked, and the check's record is added to the sidecar;
a failed check keeps the engine, for inspection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import EngineError
from ..golden import Golden
from ..verify import VerificationResult
from .build import BuiltEngine, build_engine
from .check import check_fits, check_golden_source, verification_record, verify_engine
from .plan import BuildPlan
from .runner import Engine, TensorSpec

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    built: BuiltEngine
    files: tuple[Path, Path]  # the plan and its sidecar
    verification: VerificationResult | None
    golden: Path | None

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.passed

    def __str__(self) -> str:
        info, plan = self.built.info, self.built.plan
        sm = "sm_" + info.compute_capability.replace(".", "")
        lines = [
            f"built {plan.engine_path} ({info.plan_bytes / 2**20:.1f} MiB, {plan.precision.kind}) with "
            f"TensorRT {info.trt_version} on {info.gpu_name} ({sm}) in {info.seconds:.1f} s"
        ]
        if self.verification is not None:
            lines += [f"check against {self.golden}:", str(self.verification)]
        lines.append(f"wrote {self.files[0]}, {self.files[1]}")
        return "\n".join(lines)


def load_golden_for(plan: BuildPlan, path: Path) -> Golden:
    """The golden data at ``path``, refused unless it fits the plan (one input, same checkpoint, shapes)."""
    if not path.is_file():
        raise EngineError(f"no golden data at {path}: pass --golden FILE, or --no-check to skip the check")
    if len(plan.inputs) != 1:
        raise EngineError("the check runs one-input models: pass --no-check")
    golden = Golden.load(path)
    check_golden_source(golden, plan.metadata, path)
    ((name, shapes),) = plan.profile.items()
    check_fits(
        name, TensorSpec(shapes.min, shapes.opt, shapes.max, np.dtype(plan.inputs[0].dtype)), golden.inputs
    )
    if golden.gates and not plan.debug_gates and golden.tie_samples().all():
        logger.warning(
            "every sample in %s holds a gate tie: without --debug-gates or a verification twin the "
            "check can compare no sample and will fail",
            path,
        )
    return golden


def build_and_verify(
    plan: BuildPlan,
    golden_path: Path | None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    progress: TextIO | None = None,
) -> BuildResult:
    """Build ``plan``, check the engine against ``golden_path`` (None: no check), write plan and sidecar."""
    golden = load_golden_for(plan, golden_path) if golden_path is not None else None
    built = build_engine(plan, progress=progress)
    files = built.save()  # on disk before the check: nothing after the build may lose the engine
    result = None
    if golden is not None:
        with Engine(built.data, built.sidecar(), name=str(plan.engine_path)) as engine:
            from .check import _tolerance

            gates = plan.gate_tensors if plan.debug_gates else None
            precision = plan.precision.kind
            result = verify_engine(
                engine,
                golden,
                gate_outputs=gates,
                precision=precision,
                tolerance=_tolerance(precision, rtol, atol),
            )
    record = verification_record(result, golden_path) if result is not None and golden_path else None
    if record is not None:
        built.record_verification(record)
    return BuildResult(built, files, result, golden_path)
