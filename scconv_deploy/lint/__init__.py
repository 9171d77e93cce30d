"""Offline TensorRT-compatibility lint for ONNX graphs: what the parser rejects or computes wrongly."""

from .findings import Finding, LintReport
from .lint import lint_onnx
from .rules import RULES
from .target import Target

__all__ = ["RULES", "Finding", "LintReport", "Target", "lint_onnx"]
