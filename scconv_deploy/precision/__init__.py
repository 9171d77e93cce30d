"""Reduced-precision ONNX artefacts that keep every SCConv gate decision: FP16 and INT8 (Q/DQ)."""

from .check import PrecisionCheck, check_precision
from .fp16 import emulate_fp16, to_fp16, to_naive_fp16
from .gate_path import GatePath, gate_path
from .int8 import output_layers, to_int8

__all__ = [
    "GatePath",
    "PrecisionCheck",
    "check_precision",
    "emulate_fp16",
    "gate_path",
    "output_layers",
    "to_fp16",
    "to_int8",
    "to_naive_fp16",
]
