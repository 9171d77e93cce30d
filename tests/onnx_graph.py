"""Reading facts off an ONNX graph for the export-form tests."""

from __future__ import annotations

from collections import Counter

import onnx
from onnx import TensorProto

COMPARISON_OPS = {"Where", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not"}


def op_histogram(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def bool_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every BOOL-typed value: inputs, outputs, initializers, inferred intermediates, casts."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    values = list(g.input) + list(g.output) + list(g.value_info)
    names = [v.name for v in values if v.type.tensor_type.elem_type == TensorProto.BOOL]
    names += [i.name for i in g.initializer if i.data_type == TensorProto.BOOL]
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.BOOL:
                names.append(node.output[0])
            if attr.name == "value" and attr.t.data_type == TensorProto.BOOL:
                names.append(node.output[0])
    return names


def non_constant_bounds(model: onnx.ModelProto) -> list[str]:
    """Split sizes / Slice bounds that are computed in the graph rather than constants."""
    g = model.graph
    constants = {i.name for i in g.initializer}
    constants |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    bad = []
    for node in g.node:
        if node.op_type == "Split":
            extra = node.input[1:2]  # opset >= 13: sizes as an input
        elif node.op_type == "Slice":
            extra = node.input[1:]  # starts, ends, axes, steps
        else:
            continue
        bad += [f"{node.op_type}:{name}" for name in extra if name and name not in constants]
    return bad
