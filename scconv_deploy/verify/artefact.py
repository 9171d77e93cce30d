"""``scconv-verify``'s library side: an ONNX artefact file against its golden file, with clear errors."""

from __future__ import annotations

from pathlib import Path

from .._files import read_onnx
from ..errors import ModelError, VerificationError
from ..golden import Golden
from ..ort_cpu import OrtFailure
from .compare import VerificationResult
from .ort_check import verify_onnx
from .tolerance import Tolerance, tolerance_for


def golden_beside(artefact: Path) -> Path:
    """Where ``scconv-export`` writes an artefact's golden data: ``model.onnx`` → ``model.golden.npz``."""
    return artefact.with_suffix(".golden.npz")


def verify_file(
    artefact: str | Path,
    golden: str | Path | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    precision: str | None = None,
    progress=None,
) -> tuple[VerificationResult, Path]:
    """Verify an ONNX file (FP32, FP16 or INT8) against golden data; the result and the golden file used.

    ``rtol``/``atol`` override the precision's defaults. Unreadable files, golden data of another
    model and graphs ONNX Runtime refuses raise (``ModelError``/``VerificationError``); a mismatch
    is a result that did not pass.
    """
    artefact = Path(artefact)
    golden_path = Path(golden) if golden is not None else golden_beside(artefact)
    if not artefact.is_file():
        raise ModelError(f"{artefact}: no such file")
    if not golden_path.is_file():
        hint = "" if golden is not None else " (looked beside the model): pass --golden FILE"
        raise VerificationError(f"no golden data at {golden_path}{hint}")
    model = read_onnx(artefact, ModelError)
    if any(t.data_location == 1 for t in model.graph.initializer):  # external data: load it too
        import onnx

        model = onnx.load(str(artefact))
    data = Golden.load(golden_path)
    from .ort_check import artefact_precision

    precision = precision or artefact_precision(model)
    tolerance: Tolerance = tolerance_for(precision).with_overrides(rtol, atol)
    try:
        result = verify_onnx(model, data, precision=precision, tolerance=tolerance, progress=progress)
    except OrtFailure as err:
        raise ModelError(f"{artefact}: {err}") from err
    return result, golden_path
