"""``scconv-verify``'s library side: an ONNX artefact file against its golden file, with clear errors."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_model

from .._files import read_onnx
from ..errors import ModelError, VerificationError
from ..golden import Golden, golden_beside
from ..ort_cpu import OrtFailure
from .compare import VerificationResult
from .ort_check import artefact_precision, verify_onnx
from .tolerance import Tolerance, tolerance_for


def verify_file(
    artefact: str | Path,
    golden: str | Path | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    gate_atol: float | None = None,
    precision: str | None = None,
    progress=None,
) -> tuple[VerificationResult, Path]:
    """Verify an ONNX file (FP32, FP16 or INT8) against golden data; the result and the golden file used.

    ``rtol``/``atol``/``gate_atol`` override the precision's defaults. Unreadable files, golden data
    of another model and graphs ONNX Runtime refuses raise (``ModelError``/``VerificationError``); a mismatch
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
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        try:  # the weights stored beside the graph, read into the graph already parsed
            load_external_data_for_model(model, str(artefact.parent))
        except OSError as err:
            raise ModelError(f"{artefact}: its external data cannot be read ({err.strerror or err})") from err
    data = Golden.load(golden_path)
    precision = precision or artefact_precision(model)
    tolerance: Tolerance = tolerance_for(precision).with_overrides(rtol, atol, gate_atol)
    try:
        result = verify_onnx(model, data, precision=precision, tolerance=tolerance, progress=progress)
    except OrtFailure as err:
        raise ModelError(f"{artefact}: {err}") from err
    return result, golden_path
