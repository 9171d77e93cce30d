"""The precision an ONNX file asks for: TensorRT builds it strongly typed, so the ONNX decides.

INT8 when Q/DQ nodes are present; FP16 when float16 weights or casts to float16 dominate; FP32
otherwise. The mix behind the verdict (weight dtypes, casts, Q/DQ count, input dtypes) is kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import onnx

from .onnx_file import dtype_name, read_inputs


@dataclass(frozen=True)
class Precision:
    """The precision an ONNX file asks for, and the mix behind the verdict."""

    kind: str  # "FP32", "FP16" or "INT8"
    weights: dict[str, int]  # dtype → elements in initializers and Constant nodes
    casts: dict[str, int]  # target dtype → Cast nodes
    qdq_nodes: int
    input_dtypes: dict[str, str]

    @property
    def fp16_weight_fraction(self) -> float:
        floats = self.weights.get("float16", 0) + self.weights.get("float32", 0)
        return self.weights.get("float16", 0) / floats if floats else 0.0

    def __str__(self) -> str:
        total = sum(self.weights.values()) or 1
        weights = ", ".join(
            f"{_percent(n / total)} {t}" for t, n in sorted(self.weights.items(), key=lambda kv: -kv[1])
        )
        casts = ", ".join(f"{n} to {t}" for t, n in sorted(self.casts.items())) or "none"
        qdq = f"{self.qdq_nodes} Q/DQ nodes" if self.qdq_nodes else "no Q/DQ"
        inputs = ", ".join(sorted(set(self.input_dtypes.values())))
        return f"{self.kind} (weights {weights or 'none'}; casts {casts}; {qdq}; inputs {inputs})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fp16_weight_fraction": round(self.fp16_weight_fraction, 4)}


def _percent(fraction: float) -> str:
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"


_WEIGHT_DTYPES = {"float32", "float16", "bfloat16", "float64", "int8", "uint8"}  # not shapes or indices


def _count(tensor: onnx.TensorProto, weights: Counter) -> None:
    dtype = dtype_name(tensor.data_type)
    if dtype in _WEIGHT_DTYPES:
        n = 1
        for d in tensor.dims:
            n *= d
        weights[dtype] += n


def onnx_precision(model: onnx.ModelProto) -> Precision:
    """INT8 if Q/DQ nodes are present; FP16 if float16 weights or casts to float16 dominate; else FP32."""
    weights: Counter = Counter()
    casts: Counter = Counter()
    qdq = 0
    for tensor in model.graph.initializer:
        _count(tensor, weights)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            qdq += 1
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to":
                casts[dtype_name(attr.i)] += 1
            elif node.op_type == "Constant" and attr.name == "value":
                _count(attr.t, weights)
    inputs = {i.name: i.dtype for i in read_inputs(model)}
    precision = Precision("FP32", dict(weights), dict(casts), qdq, inputs)
    if qdq:
        kind = "INT8"
    elif precision.fp16_weight_fraction >= 0.5 or casts["float16"] > casts["float32"]:
        kind = "FP16"
    else:
        return precision
    return Precision(kind, dict(weights), dict(casts), qdq, inputs)
