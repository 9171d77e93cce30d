"""Facts the rules read off an ONNX graph: value types, constants, producers and consumers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import onnx
from onnx import TensorProto

from .support import NONDETERMINISTIC_OPS, ONNX_DOMAINS

_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})


def default_opset(model: onnx.ModelProto) -> int | None:
    """The model's ``ai.onnx`` opset, or None when it declares none."""
    versions = [o.version for o in model.opset_import if o.domain in ONNX_DOMAINS]
    return max(versions) if versions else None


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def value_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element type (``TensorProto.DataType``) of every value whose type is declared, inferred or evident."""
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        elem = value.type.tensor_type.elem_type
        if elem:
            types[value.name] = elem
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Cast" and node.output:
            types[node.output[0]] = int(attribute(node, "to"))
        elif node.op_type == "Constant" and node.output:
            value = attribute(node, "value")
            if isinstance(value, TensorProto):
                types[node.output[0]] = value.data_type
    return types


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Initializers (unless a graph input overrides them) and Constant outputs."""
    inputs = {i.name for i in graph.input}
    names = {t.name for t in graph.initializer if t.name not in inputs}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


# Q/DQ on constant weights is the explicit-quantization pattern TensorRT builds INT8 from: never "fold" it.
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def foldable_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes that compute only from constants (directly or through other such nodes): left unfolded."""
    constants = constant_names(graph)
    folded = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if (
            inputs
            and node.domain in ONNX_DOMAINS
            and node.op_type not in NONDETERMINISTIC_OPS | _SUBGRAPH_OPS | _QDQ_OPS
            and all(name in constants for name in inputs)
        ):
            folded.append(node)
            constants.update(node.output)
    return folded


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                users[name].append(node)
    return users


def stored_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Initializers and Constant values, including those of subgraphs: the tensors that may live outside."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from stored_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from stored_tensors(sub)


def external_location(tensor: TensorProto) -> str | None:
    """The file an external tensor's data lives in, relative to the model; None for inline data."""
    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    entries = {e.key: e.value for e in tensor.external_data}
    return entries.get("location", "")
