"""An engine against golden PyTorch data, decision-aware (``scconv_deploy.verify.compare``).

An engine built ``--debug-gates`` returns every SRU's gate values (their names are in the
sidecar), so gate decision flips are counted exactly; without them, samples holding a gate tie
are set aside and the rest compared tightly. ``verify_engine`` takes anything with the ``Engine``
contract (``inputs``, ``outputs``, ``infer``), so it is tested without TensorRT.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import VerificationError
from ..golden import Golden
from ..precision.check import TOLERANCES as PRECISION_TOLERANCES
from ..verify import VerificationResult, compare
from .profile import dims_text
from .runner import TensorSpec, load_engine

logger = logging.getLogger(__name__)

# Default (rtol, atol) per ONNX precision; an element fails when it exceeds both. FP32 as scconv-export
# checks; FP16 and INT8 as the precision step checks its ONNX files (scconv_deploy.precision).
TOLERANCES = {
    "FP32": (1e-3, 1e-4),
    "FP16": PRECISION_TOLERANCES["fp16"],
    "INT8": PRECISION_TOLERANCES["int8"],
}


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


def run_batches(engine: EngineLike, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """All outputs of a one-input engine, in batches its profile admits (padded to its minimum)."""
    if len(engine.inputs) != 1:
        raise VerificationError(
            f"verification runs one-input engines; this one takes {sorted(engine.inputs)}"
        )
    ((name, spec),) = engine.inputs.items()
    check_fits(name, spec, inputs)
    x = inputs.astype(spec.dtype, copy=False)
    chunks = []
    for start in range(0, len(x), spec.max[0]):
        part = x[start : start + spec.max[0]]
        n = len(part)
        if n < spec.min[0]:
            part = np.concatenate([part, np.zeros((spec.min[0] - n, *part.shape[1:]), part.dtype)])
        chunks.append({k: v[:n] for k, v in engine.infer({name: part}).items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in engine.outputs}


def verify_engine(
    engine: EngineLike,
    golden: Golden,
    gate_outputs: list[str] | None = None,
    *,
    precision: str = "FP32",
    rtol: float | None = None,
    atol: float | None = None,
) -> VerificationResult:
    """Run ``engine`` on the golden inputs; compare outputs (and gate decisions, if it exposes them).

    Tolerances default to ``TOLERANCES[precision]``. Returns the result; a mismatch does not raise.
    """
    gate_outputs = list(gate_outputs or [])
    missing = [n for n in golden.output_names + gate_outputs if n not in engine.outputs]
    if missing:
        raise VerificationError(f"the engine has no output(s) {missing} (it has {engine.outputs})")
    if gate_outputs and len(gate_outputs) != len(golden.gates):
        raise VerificationError(
            f"the engine exposes {len(gate_outputs)} gate tensors, "
            f"the golden data holds {len(golden.gates)} blocks"
        )
    default_rtol, default_atol = TOLERANCES.get(precision, TOLERANCES["FP32"])
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    results = run_batches(engine, golden.inputs)
    outputs = [results[n].astype(np.float32) for n in golden.output_names]
    gates = [results[n].astype(np.float32) for n in gate_outputs] if gate_outputs else None
    result = compare(golden, outputs, gates, rtol=rtol, atol=atol)
    (spec,) = engine.inputs.values()
    if spec.dtype != golden.inputs.dtype:
        result.notes.append(f"golden inputs ({golden.inputs.dtype}) were cast to the engine's {spec.dtype}")
    if gates is None and golden.gates:
        result.notes.append("gate decisions not compared: build with --debug-gates to count flips exactly")
    return result


def check_golden_source(golden: Golden, onnx_metadata: dict[str, str], golden_path: Path) -> None:
    """Refuse golden data made from another checkpoint than the engine's ONNX."""
    want, have = onnx_metadata.get("source.sha256"), golden.meta.get("source.sha256")
    if want and have and want != have:
        raise VerificationError(
            f"{golden_path} was made from checkpoint sha256 {have[:12]}…, the engine's ONNX from {want[:12]}…"
        )


def find_golden(plan_path: Path, sidecar: dict[str, Any] | None) -> Path:
    """``MODEL.golden.npz`` beside the plan, else beside the ONNX the sidecar names (relative to the plan)."""
    candidates = [plan_path.with_suffix(".golden.npz")]
    if sidecar is not None:
        candidates.append((plan_path.parent / sidecar["onnx"]["file"]).with_suffix(".golden.npz"))
    for path in candidates:
        if path.is_file():
            return path
    raise VerificationError(f"no golden data at {' or '.join(map(str, candidates))}: pass --golden FILE")


def verification_record(result: VerificationResult, golden_path: Path) -> dict[str, Any]:
    """What the sidecar keeps of a verification."""
    return {
        "golden": str(golden_path),
        "passed": result.passed,
        "summary": str(result).splitlines()[0],
        "gates_flipped": result.gates_flipped if result.flips is not None else None,
        "real_flips": result.real_flips if result.flips is not None else None,
        "reasons": result.reasons,
    }


def verify_plan(
    plan_path: str | Path,
    golden_path: str | Path | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> tuple[VerificationResult, Path]:
    """Load a plan (checked against its sidecar) and verify it; the result and the golden file used."""
    plan_path = Path(plan_path)
    with load_engine(plan_path) as engine:
        sidecar = engine.sidecar
        path = Path(golden_path) if golden_path is not None else find_golden(plan_path, sidecar)
        golden = Golden.load(path)
        if sidecar is not None:
            check_golden_source(golden, sidecar["onnx"]["metadata"], path)
        result = verify_engine(
            engine,
            golden,
            sidecar["gate_outputs"] if sidecar else None,
            precision=sidecar["precision"]["kind"] if sidecar else "FP32",
            rtol=rtol,
            atol=atol,
        )
    logger.info("verified %s against %s: %s", plan_path, path, "passed" if result.passed else "FAILED")
    return result, path
