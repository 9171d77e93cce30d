"""An engine against golden PyTorch data, sound at SCConv's gate ties (``scconv_deploy.verify.compare``).

Two engines can be involved:

* the **deployment engine**, run as it is. Its outputs are held to the tolerance on the samples
  whose gates all lie clear of their thresholds; with its gate values exposed (built
  ``--debug-gates``) its decisions are read too, and every sample whose decisions agree is held.
* its **verification twin**, built from the verification graph (``verify.forced_graph``: the same
  ONNX with every SRU's mask fed in as an input and its own masks as outputs) with the same
  precision and profiles: run with PyTorch's decisions fed in, *every* sample is compared.

A check that compared no sample never passes. ``verify_engine`` takes anything with the engine
contract (``inputs``, ``outputs``, ``infer``), so it is tested without TensorRT. ``verify_plan``
uses the twin beside a plan (``MODEL.verify.plan``) when there is one, refusing a twin of another
build of the plan.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import VerificationError
from ..gates import MASK_PREFIX
from ..golden import Golden, golden_beside
from ..verify import Run, VerificationResult, compare
from ..verify.forced import FORCE_PREFIX
from ..verify.tolerance import Tolerance, tolerance_for
from .profile import dims_text
from .runner import TensorSpec, load_engine
from .twin import block_list, is_twin, twin_path, twin_tensors

logger = logging.getLogger(__name__)


class EngineLike(Protocol):
    inputs: dict[str, TensorSpec]
    outputs: list[str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_fits(name: str, spec: TensorSpec, inputs: np.ndarray) -> None:
    """Refuse golden inputs whose sample shape the profile of input ``name`` does not admit."""
    if not spec.admits((spec.min[0], *inputs.shape[1:])):
        raise VerificationError(
            f"golden inputs of shape {dims_text(inputs.shape)} do not fit the engine's profile for '{name}' "
            f"(min {dims_text(spec.min)}, max {dims_text(spec.max)}): rebuild with --batch/--hw covering them"
        )


def _network_input(engine: EngineLike) -> str:
    names = [n for n in engine.inputs if not n.startswith(FORCE_PREFIX)]
    if len(names) != 1:
        raise VerificationError(f"verification runs one-input networks; this engine takes {sorted(names)}")
    return names[0]


def run_batches(
    engine: EngineLike, inputs: np.ndarray, extra: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """All outputs on ``inputs`` (and ``extra`` inputs of the same batch), in batches the profile admits.

    A last batch below the profile's minimum is padded with zeros and trimmed from the results.
    """
    name = _network_input(engine)
    spec = engine.inputs[name]
    check_fits(name, spec, inputs)
    feeds = {name: inputs, **(extra or {})}
    feeds = {k: v.astype(engine.inputs[k].dtype, copy=False) for k, v in feeds.items()}
    chunks = []
    for start in range(0, len(inputs), spec.max[0]):
        part = {k: v[start : start + spec.max[0]] for k, v in feeds.items()}
        n = len(part[name])
        if n < spec.min[0]:
            part = {
                k: np.concatenate([v, np.zeros((spec.min[0] - n, *v.shape[1:]), v.dtype)])
                for k, v in part.items()
            }
        chunks.append({k: v[:n] for k, v in engine.infer(part).items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in engine.outputs}


def _deployed_run(engine: EngineLike, golden: Golden, gate_outputs: list[str]) -> Run:
    results = run_batches(engine, golden.inputs)
    outputs = [results[n].astype(np.float32) for n in golden.output_names]
    if not gate_outputs:
        return Run(outputs)
    masks = [
        spec.mask(spec.decide(results[n].astype(np.float32)))
        for spec, n in zip(golden.gates, gate_outputs, strict=True)
    ]
    return Run(outputs, masks)


def _forced_run(twin: EngineLike, golden: Golden, force_inputs: list[str], mask_outputs: list[str]) -> Run:
    extra = {name: golden.masks(b, slice(None)) for b, name in enumerate(force_inputs)}
    results = run_batches(twin, golden.inputs, extra)
    outputs = [results[n].astype(np.float32) for n in golden.output_names]
    return Run(outputs, [results[n] for n in mask_outputs])


def _check_twin(twin: EngineLike, golden: Golden, force_inputs: list[str], mask_outputs: list[str]) -> None:
    """Refuse a twin whose SCConv blocks or mask profiles are not the golden data's, in one line."""
    if len(force_inputs) != len(golden.gates) or len(mask_outputs) != len(golden.gates):
        raise VerificationError(
            f"the verification twin has {len(force_inputs)} forced gates, the golden data "
            f"{len(golden.gates)} blocks"
        )
    want = [MASK_PREFIX + g.name for g in golden.gates]
    if mask_outputs != want:
        raise VerificationError(
            f"the verification twin's SCConv blocks ({block_list(mask_outputs)}) are not the golden "
            f"data's ({block_list(want)}): pass the golden file written with its ONNX"
        )
    _missing(twin, golden.output_names + mask_outputs + force_inputs, "verification twin")
    for name, decisions in zip(force_inputs, golden.decisions, strict=True):
        spec = twin.inputs[name]
        if not spec.admits((spec.min[0], *decisions.shape[1:])):
            raise VerificationError(
                f"golden decisions of shape {dims_text(decisions.shape)} do not fit the verification twin's "
                f"profile for '{name}' (min {dims_text(spec.min)}, max {dims_text(spec.max)}): rebuild the "
                "twin from this golden data (scconv-trt build)"
            )


def _missing(engine: EngineLike, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in engine.outputs and n not in engine.inputs]
    if missing:
        raise VerificationError(f"the {what} has no tensor(s) {missing[:3]} (it has {engine.outputs})")


def verify_engine(
    engine: EngineLike | None,
    golden: Golden,
    *,
    gate_outputs: list[str] | None = None,
    twin: EngineLike | None = None,
    twin_tensors: tuple[list[str], list[str]] | None = None,
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
) -> VerificationResult:
    """Run the deployment ``engine`` (and its verification ``twin``) on the golden data and compare.

    ``gate_outputs`` names the gate-value outputs of an engine built ``--debug-gates``;
    ``twin_tensors`` is (force inputs, mask outputs) of the twin, in SRU order. Tolerances
    default to ``precision``'s. Returns the result; a mismatch does not raise.
    """
    if engine is None and twin is None:
        raise VerificationError("nothing to verify: neither an engine nor its verification twin")
    gate_outputs = list(gate_outputs or [])
    if gate_outputs and len(gate_outputs) != len(golden.gates):
        raise VerificationError(
            f"the engine exposes {len(gate_outputs)} gate tensors, "
            f"the golden data holds {len(golden.gates)} blocks"
        )
    if engine is not None:
        _missing(engine, golden.output_names + gate_outputs, "engine")
    force_inputs: list[str] = []
    mask_outputs: list[str] = []
    if twin is not None:
        if twin_tensors is None:
            raise VerificationError("the verification twin's force inputs and mask outputs are not known")
        force_inputs, mask_outputs = (list(names) for names in twin_tensors)
        _check_twin(twin, golden, force_inputs, mask_outputs)
    deployed = _deployed_run(engine, golden, gate_outputs) if engine is not None else None
    forced = _forced_run(twin, golden, force_inputs, mask_outputs) if twin is not None else None
    result = compare(golden, forced, deployed, precision=precision.lower(), tolerance=tolerance)
    dtype = (engine or twin).inputs[_network_input(engine or twin)].dtype
    if dtype != golden.inputs.dtype:
        result.notes.append(f"golden inputs ({golden.inputs.dtype}) were cast to the engine's {dtype}")
    if twin is None:
        result.notes.append(
            "no verification twin: only samples with no gate near its threshold could be compared "
            "(scconv-trt build writes MODEL.verify.plan beside the engine)"
        )
    return result


def find_golden(plan_path: Path, sidecar: dict[str, Any] | None) -> Path:
    """``MODEL.golden.npz`` beside the plan, else beside the ONNX the sidecar names (relative to the plan)."""
    candidates = [golden_beside(plan_path)]
    if sidecar is not None:
        candidates.append(golden_beside(plan_path.parent / sidecar["onnx"]["file"]))
    for path in candidates:
        if path.is_file():
            return path
    raise VerificationError(f"no golden data at {' or '.join(map(str, candidates))}: pass --golden FILE")


def verification_record(
    result: VerificationResult, golden_path: Path, twin: str | None = None
) -> dict[str, Any]:
    """What the sidecar keeps of a verification (``twin``: the verification twin's file, when one ran)."""
    return {
        "golden": str(golden_path),
        "twin": twin,
        "passed": result.passed,
        "summary": str(result).splitlines()[0],
        "compared": result.compared,
        "samples": result.samples,
        "real_flips": result.real_flips,
        "reasons": result.reasons,
    }


def engine_tolerance(precision: str, rtol: float | None, atol: float | None) -> Tolerance:
    """The tolerance of ``precision`` (the engine's ONNX precision), with the user's overrides."""
    return tolerance_for(precision.lower()).with_overrides(rtol, atol)


def verify_plan(
    plan_path: str | Path,
    golden_path: str | Path | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    check_compatibility: bool = True,
) -> tuple[VerificationResult, Path]:
    """Load a plan (checked against its sidecar) and its verification twin if present, and verify them.

    ``check_compatibility=False`` loads both even where their sidecars name another TensorRT
    release or GPU (a warning; TensorRT decides).
    """
    plan_path = Path(plan_path)
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(load_engine(plan_path, check_compatibility=check_compatibility))
        sidecar = engine.sidecar
        if sidecar is not None and is_twin(sidecar):
            raise VerificationError(
                f"{plan_path} is a verification twin: verify the engine it was built for, "
                f"{sidecar['verification_twin']['of']} (the twin is used with it)"
            )
        path = Path(golden_path) if golden_path is not None else find_golden(plan_path, sidecar)
        golden = Golden.load(path)
        if sidecar is not None:
            golden.check_source(sidecar["onnx"]["metadata"], "the engine's ONNX", str(path))
        precision = sidecar["precision"]["kind"] if sidecar else "FP32"
        twin = tensors = None
        twin_file = twin_path(plan_path)
        if twin_file.is_file():
            twin = stack.enter_context(load_engine(twin_file, check_compatibility=check_compatibility))
            tensors = twin_tensors(twin_file, twin.sidecar, plan_path, sidecar)
        result = verify_engine(
            engine,
            golden,
            gate_outputs=sidecar.get("gate_outputs") if sidecar else None,
            twin=twin,
            twin_tensors=tensors,
            precision=precision,
            tolerance=engine_tolerance(precision, rtol, atol),
        )
    logger.info("verified %s against %s: %s", plan_path, path, "passed" if result.passed else "FAILED")
    return result, path
