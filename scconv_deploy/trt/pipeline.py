"""ONNX → verified engine files: the golden data checked first, then the builds, the check, the writes.

What ``scconv-trt build`` runs once the plan is settled. The golden data is read and matched to
the plan (same checkpoint, sample shape inside the profile, the SCConv blocks and mask shapes of
the verification twin) before the build, so a doomed check costs no build time. Two engines are
built: the deployment engine, exactly the ONNX as given, and its verification twin
(``trt.twin``: the same ONNX with the gate decisions fed in), which lets the check compare every
golden sample even where each holds a gate tie. Each engine and its sidecar are written as soon as
its build returns (a later failure cannot lose them), then both are checked, and the check's
record is added to both sidecars; a failed check keeps the engines, for inspection.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import EngineError
from ..gates import MASK_METADATA_KEY
from ..golden import Golden
from ..verify import VerificationResult
from .build import BuiltEngine, build_engine
from .check import check_fits, engine_tolerance, verification_record, verify_engine
from .plan import BuildPlan
from .runner import Engine, TensorSpec
from .twin import for_engine, remove_twin, twin_plan

logger = logging.getLogger(__name__)


@dataclass
class CheckSetup:
    """What the check of a build needs, settled before the build: golden data and the twin's plan."""

    golden_path: Path
    golden: Golden
    twin: BuildPlan | None  # None: no twin (--no-twin, or a model without SCConv gates)
    why_no_twin: str = ""

    def __str__(self) -> str:
        lines = [f"check against {self.golden_path} ({self.golden.samples} samples)"]
        if self.twin is None:
            lines.append(f"verification twin: none ({self.why_no_twin})")
        else:
            lines.append(str(self.twin))
        return "\n".join(lines)


@dataclass
class BuildResult:
    built: BuiltEngine
    files: tuple[Path, Path]  # the plan and its sidecar
    verification: VerificationResult | None
    golden: Path | None
    twin: BuiltEngine | None = None
    twin_files: tuple[Path, Path] | None = None

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
        if self.twin is not None:
            twin = self.twin.info
            lines.append(
                f"built its verification twin {self.twin.plan.engine_path} "
                f"({twin.plan_bytes / 2**20:.1f} MiB, gate decisions fed in) in {twin.seconds:.1f} s"
            )
        if self.verification is not None:
            lines += [f"check against {self.golden}:", str(self.verification)]
        files = [*self.files, *(self.twin_files or ())]
        lines.append(f"wrote {', '.join(map(str, files))}")
        return "\n".join(lines)


def load_golden_for(plan: BuildPlan, path: Path) -> Golden:
    """The golden data at ``path``, refused unless it fits the plan (one input, same checkpoint, shapes)."""
    if not path.is_file():
        raise EngineError(f"no golden data at {path}: pass --golden FILE, or --no-check to skip the check")
    if len(plan.inputs) != 1:
        raise EngineError("the check runs one-input models: pass --no-check")
    golden = Golden.load(path)
    golden.check_source(plan.metadata, "the engine's ONNX", str(path))
    ((name, shapes),) = plan.profile.items()
    check_fits(
        name, TensorSpec(shapes.min, shapes.opt, shapes.max, np.dtype(plan.inputs[0].dtype)), golden.inputs
    )
    return golden


def prepare_check(plan: BuildPlan, golden_path: Path, *, twin: bool = True) -> CheckSetup:
    """The golden data matched to ``plan`` and, with ``twin``, the verification twin's plan (its mask
    profiles from the golden data): everything a check can refuse, refused before any build."""
    golden = load_golden_for(plan, golden_path)
    if not twin:
        setup = CheckSetup(golden_path, golden, None, "--no-twin")
    elif golden.gates or MASK_METADATA_KEY in plan.metadata:
        setup = CheckSetup(golden_path, golden, twin_plan(plan, golden))
    else:
        setup = CheckSetup(golden_path, golden, None, "no SCConv gates: every sample is compared as deployed")
    if setup.twin is None and golden.gates and not plan.debug_gates and golden.tie_samples().all():
        logger.warning(
            "every sample in %s holds a gate tie: without a verification twin or --debug-gates the "
            "check can compare no sample and will fail",
            golden_path,
        )
    return setup


def _verify(
    built: BuiltEngine,
    twin: BuiltEngine | None,
    golden: Golden,
    rtol: float | None,
    atol: float | None,
) -> VerificationResult:
    plan = built.plan
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(Engine(built.data, built.sidecar(), name=str(plan.engine_path)))
        twin_engine = tensors = None
        if twin is not None and twin.plan.twin_of is not None:
            twin_engine = stack.enter_context(
                Engine(twin.data, twin.sidecar(), name=str(twin.plan.engine_path))
            )
            graph = twin.plan.twin_of.graph
            tensors = (list(graph.force_inputs), list(graph.mask_outputs))
        precision = plan.precision.kind
        return verify_engine(
            engine,
            golden,
            gate_outputs=plan.gate_tensors if plan.debug_gates else None,
            twin=twin_engine,
            twin_tensors=tensors,
            precision=precision,
            tolerance=engine_tolerance(precision, rtol, atol),
        )


def build_and_verify(
    plan: BuildPlan,
    golden_path: Path | None,
    *,
    twin: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    progress: TextIO | None = None,
) -> BuildResult:
    """Build ``plan`` (and, with ``twin``, its verification twin), write each engine and sidecar as soon
    as it is built, check them against ``golden_path`` (None: no check, no twin), record the check."""
    setup = prepare_check(plan, golden_path, twin=twin) if golden_path is not None else None
    built = build_engine(plan, progress=progress)
    files = built.save()  # on disk before anything else: nothing after the build may lose the engine
    removed = remove_twin(plan.engine_path)  # it verified the engine this build replaced
    twin_built = twin_files = None
    if setup is not None and setup.twin is not None:
        twin_built = build_engine(for_engine(setup.twin, built.info), progress=progress)
        twin_files = twin_built.save()
    elif removed is not None:
        logger.warning("removed %s: the verification twin of the engine this build replaced", removed)
    result = None
    if setup is not None:
        result = _verify(built, twin_built, setup.golden, rtol, atol)
        twin_name = twin_built.plan.engine_path.name if twin_built is not None else None
        record = verification_record(result, setup.golden_path, twin=twin_name)
        built.record_verification(record)
        if twin_built is not None:
            twin_built.record_verification(record)
    return BuildResult(built, files, result, golden_path, twin_built, twin_files)
