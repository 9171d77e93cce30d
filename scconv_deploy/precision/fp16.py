"""FP16 ONNX with SCConv's gate path kept in FP32, the naive counterfactual, and an FP16 emulation.

The conversion is onnxconverter-common's ``convert_float_to_float16`` (the converter NVIDIA
ModelOpt's AutoCast builds on; ModelOpt's ONNX extra itself pins onnxruntime-gpu and onnx 1.21,
which cannot live beside a CPU stack) with the gate path as its node block list: explicit Casts
surround the FP32 islands, inputs and outputs stay FP32 unless asked.

ONNX Runtime's CPU provider computes many FP16 operators in FP32 and so understates FP16 error;
``emulate_fp16`` gives a closer view: the FP32 graph with every tensor that would be FP16 rounded
to FP16 between operators (weights included), and the gate path left in FP32.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..gates import MASK_METADATA_KEY, gate_tensor_names, mask_tensor_names
from .gate_path import ensure_node_names, gate_path


def _convert(model: onnx.ModelProto, block: list[str], keep_io_types: bool) -> onnx.ModelProto:
    from onnxconverter_common import float16

    produced_by = {o: n.name for n in model.graph.node for o in n.output}
    del model.graph.value_info[:]  # stale types from the FP32 export would contradict the inserted casts
    with warnings.catch_warnings():  # it warns for every weight it clamps to the FP16 range
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            model, keep_io_types=keep_io_types, node_block_list=block, disable_shape_infer=False
        )
    del converted.metadata_props[:]
    converted.metadata_props.extend(model.metadata_props)
    _restore_gate_names(converted, produced_by)
    _drop_round_trips(converted)
    del converted.graph.value_info[:]  # let runtimes infer the (now mixed) types afresh
    return converted


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _drop_round_trips(model: onnx.ModelProto) -> None:
    """Remove FP32 → FP16 → FP32 cast pairs: an FP32 node feeding another would read a rounded value.

    The converter casts at the boundary of every blocked node, so an edge between two FP32 nodes
    (the gate value into the decision arithmetic) can pass through FP16 and lose its low bits —
    exactly the rounding the FP32 island exists to avoid.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    replace = {}
    for node in graph.node:
        if _cast_to(node) == TensorProto.FLOAT and node.input[0] in producer:
            first = producer[node.input[0]]
            if _cast_to(first) == TensorProto.FLOAT16 and first.input[0] in producer:
                source = producer[first.input[0]]
                if _cast_to(source) != TensorProto.FLOAT16 and source.op_type != "Cast":
                    replace[node.output[0]] = first.input[0]
    if not replace:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    live = [n for n in graph.node if any(o in used for o in n.output) or not n.output]
    while len(live) != len(graph.node):  # drop the now unused casts (and casts feeding only them)
        del graph.node[:]
        graph.node.extend(live)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        live = [n for n in graph.node if any(o in used for o in n.output) or not n.output]


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def _restore_gate_names(model: onnx.ModelProto, produced_by: dict[str, str]) -> None:
    """The converter renames the outputs of nodes it keeps in FP32 (and may give a gate's name to
    the FP16 cast of it); give each gate tensor its name back on the FP32 value."""
    nodes = {n.name: n for n in model.graph.node}
    has_masks = any(p.key == MASK_METADATA_KEY for p in model.metadata_props)
    for gate in gate_tensor_names(model) + (mask_tensor_names(model) if has_masks else []):
        node = nodes.get(produced_by.get(gate, ""))
        if node is None or gate in node.output:
            continue
        _rename(model, gate, f"{gate}/fp16")  # a cast that took the name, if any, steps aside
        _rename(model, node.output[0], gate)


def to_fp16(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """FP16 everywhere except the gate path (see ``gate_path``), which keeps FP32 behind explicit casts."""
    model = _copy(model)
    return _convert(model, sorted(gate_path(model).nodes), keep_io_types)


def to_naive_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Whole-graph FP16, gates included: the counterfactual our policy prevents."""
    model = _copy(model)
    ensure_node_names(model)
    return _convert(model, [], keep_io_types=True)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _round_to_fp16(src: str, dst: str, name: str) -> list[onnx.NodeProto]:
    """``dst`` = ``src`` rounded to FP16 and back to FP32: what an FP16 tensor can hold."""
    half = f"{dst}__fp16"
    return [
        helper.make_node("Cast", [src], [half], to=TensorProto.FLOAT16, name=f"{name}/to_fp16"),
        helper.make_node("Cast", [half], [dst], to=TensorProto.FLOAT, name=f"{name}/to_fp32"),
    ]


def emulate_fp16(model: onnx.ModelProto, keep_gate_path: bool = True) -> onnx.ModelProto:
    """An FP32 graph computing what the FP16 graph stores: every float tensor an FP16 operator
    reads or writes is rounded to FP16 (weights, the graph input, FP32 islands' results where FP16
    operators consume them, and every FP16 operator's outputs); arithmetic itself runs in FP32.
    """
    model = _copy(model)
    ensure_node_names(model)
    kept = gate_path(model).nodes if keep_gate_path else frozenset()
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.value_info, *graph.input, *graph.output)
    }
    inits = {i.name: i for i in graph.initializer}
    rounded: dict[str, str] = {}  # tensor -> its FP16-rounded twin
    new_nodes = []
    for node in graph.node:
        if node.name in kept or node.op_type in {"Shape", "Constant"}:
            new_nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if types.get(name) != TensorProto.FLOAT and name not in inits:
                continue
            init = inits.get(name)
            if init is not None:  # FP16 weights: round their values once, in place
                if init.data_type == TensorProto.FLOAT and name not in rounded:
                    value = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(value, name))
                    rounded[name] = name
                continue
            if name not in rounded:  # an FP32 value entering FP16 arithmetic
                rounded[name] = f"{name}__as_fp16"
                new_nodes += _round_to_fp16(name, rounded[name], f"{node.name}/in{i}")
            node.input[i] = rounded[name]
        outs = [(i, o) for i, o in enumerate(node.output) if types.get(o) == TensorProto.FLOAT]
        for i, out in outs:
            node.output[i] = f"{out}__fp32"
        new_nodes.append(node)
        for _, out in outs:
            new_nodes += _round_to_fp16(f"{out}__fp32", out, f"{node.name}/{out}")
            rounded[out] = out
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    return model
