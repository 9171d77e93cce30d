"""``lint_onnx``: load, infer types, run every rule, return a report."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from .._files import read_onnx
from ..errors import ExportError
from .findings import LintReport
from .graph import default_opset
from .rules import RULES, missing_external_files
from .target import Target

logger = logging.getLogger(__name__)

_SEVERITY_ORDER = {"error": 0, "warning": 1}


def lint_onnx(
    model: onnx.ModelProto | str | Path, trt_major: int = 10, trt_version: str | None = None
) -> LintReport:
    """Check an ONNX model, offline, against what TensorRT ``trt_major`` (optionally ``trt_version``) parses.

    A path is read without its external data; external files it names must exist beside it (TRT051).
    Raises ``ExportError`` for an unreadable file, ``ValueError`` for an unknown target.
    """
    target = Target.parse(trt_major, trt_version)
    name = None
    findings = []
    if isinstance(model, (str, Path)):
        path = Path(model)
        model = _load(path)
        name = str(path)
        findings += missing_external_files(model, path.parent)
    inferred = _infer(model)
    for rule in RULES:
        findings += rule(inferred, target)
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.rule))
    return LintReport(findings, trt_major, default_opset(model), trt_version=trt_version, model=name)


def _load(path: Path) -> onnx.ModelProto:
    return read_onnx(path, ExportError)


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference, so intermediate types are known; best effort, the declared types remain otherwise."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as err:  # onnx raises several kinds; the lint goes on without inferred types
        logger.warning("shape inference failed (%s); type-based rules see only declared types", err)
        return model
