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

from .gate_path import ensure_node_names, gate_path, gate_tensor_names


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
    del converted.graph.value_info[:]  # let runtimes infer the (now mixed) types afresh
    return converted


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
    for gate in gate_tensor_names(model):
        node = nodes.get(produced_by.get(gate, ""))
        if node is None or gate in node.output:
            continue
        _rename(model, gate, f"{gate}/fp16")  # a cast that took the name, if any, steps aside
        _rename(model, node.output[0], gate)


def to_fp16(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """FP16 everywhere except the gate path (see ``gate_path``), which keeps FP32 with explicit casts."""
    model = _copy(model)
    path = gate_path(model)
    return _convert(model, sorted(path.nodes), keep_io_types)


def to_naive_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Whole-graph FP16, gates included: the counterfactual our policy prevents."""
    model = _copy(model)
    ensure_node_names(model)
    return _convert(model, [], keep_io_types=True)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def emulate_fp16(model: onnx.ModelProto, keep_gate_path: bool = True) -> onnx.ModelProto:
    """An FP32 graph computing what an FP16 graph stores: every float tensor outside the kept nodes
    (and every float weight they read) rounded to FP16, computation in FP32.
    """
    model = _copy(model)
    ensure_node_names(model)
    kept = gate_path(model).nodes if keep_gate_path else frozenset()
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)
    }
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rounded_inits = set()
    consumers_of_init = {i.name: i for i in graph.initializer}
    new_nodes = []
    for node in graph.node:
        if node.name in kept or node.op_type in {"Shape", "Constant"}:
            new_nodes.append(node)
            continue
        for name in node.input:  # FP16 weights: round their values once
            init = consumers_of_init.get(name)
            if init is not None and init.data_type == TensorProto.FLOAT and name not in rounded_inits:
                value = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(value, name))
                rounded_inits.add(name)
        renamed = []
        for out in node.output:
            if types.get(out) == TensorProto.FLOAT and out not in outputs:
                renamed.append(out)
        originals = list(node.output)
        for i, out in enumerate(originals):
            if out in renamed:
                node.output[i] = f"{out}__fp32"
        new_nodes.append(node)
        for out in renamed:  # round to FP16 and back: what an FP16 tensor can hold
            half = f"{out}__fp16"
            new_nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{out}__fp32"],
                    [half],
                    to=TensorProto.FLOAT16,
                    name=f"{node.name}/to_fp16/{out}",
                )
            )
            new_nodes.append(
                helper.make_node(
                    "Cast", [half], [out], to=TensorProto.FLOAT, name=f"{node.name}/to_fp32/{out}"
                )
            )
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    return model
