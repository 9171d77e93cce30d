"""The verification graph: an exported model whose SCConv gate decisions can be fed in.

A gate decision that two correct runtimes take differently (a *tie*: the gate value within
rounding of its threshold) moves that pixel by about ``|x|`` and, through the CRU's softmax, the
whole sample a little. Comparing outputs sample by sample is then only sound when both sides
took the same decisions. ``forced_graph(model)`` makes that possible: every SRU's mask — the
tensor that *is* its decision (``scconv_deploy.gates``) — is read by the rest of the network from
a new graph input ``force:<block>`` instead, so the artefact runs with the reference's decisions
while still computing its own, which stay graph outputs (``mask:<block>``) to be counted.

Pure ONNX → ONNX: the same graph runs in ONNX Runtime here and builds into a TensorRT
verification engine elsewhere. Needs onnx only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import VerificationError
from ..gates import MASK_PREFIX, mask_tensor_names

FORCE_PREFIX = "force:"


@dataclass(frozen=True)
class ForcedGraph:
    """A verification graph and the names that drive it."""

    model: onnx.ModelProto
    input_name: str  # the network's own input
    output_names: tuple[str, ...]  # the network's own outputs
    mask_outputs: tuple[str, ...]  # the artefact's own decisions, one per SRU, in order
    force_inputs: tuple[str, ...]  # the decisions fed in, one per SRU, in the same order
    force_dtypes: tuple[np.dtype, ...]  # element type of each force input


def force_input_name(mask: str) -> str:
    """``mask:<block>`` → ``force:<block>``."""
    return FORCE_PREFIX + (mask[len(MASK_PREFIX) :] if mask.startswith(MASK_PREFIX) else mask)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a convenience here; FP32 is the export form's mask type
        return {}
    values = (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.tensor_type.elem_type}


def _mask_shape(model: onnx.ModelProto, mask: str) -> list:
    """Symbolic shape of a mask: N, C, H, W of the SRU (dims as the graph knows them, else unnamed)."""
    for v in model.graph.value_info:
        if v.name == mask and v.type.tensor_type.HasField("shape"):
            return [
                d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                for d in v.type.tensor_type.shape.dim
            ]
    return [None, None, None, None]


def forced_graph(model: onnx.ModelProto) -> ForcedGraph:
    """The verification graph of an exported model (FP32, FP16 or INT8; see the module docstring)."""
    masks = mask_tensor_names(model)
    graph = model.graph
    produced = {o for node in graph.node for o in node.output}
    missing = [m for m in masks if m not in produced]
    if missing:
        raise VerificationError(
            f"mask tensors {missing[:3]} are not in the graph (was it modified after export?)"
        )
    if len(graph.input) != 1:
        raise VerificationError(f"verification takes one-input models; this one has {len(graph.input)}")
    forced = onnx.ModelProto()
    forced.CopyFrom(model)
    types = _elem_types(model)
    force_names = [force_input_name(m) for m in masks]
    renamed = dict(zip(masks, force_names, strict=True))
    for node in forced.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    dtypes = []
    for mask, name in zip(masks, force_names, strict=True):
        elem = types.get(mask, onnx.TensorProto.FLOAT)
        dtypes.append(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
        forced.graph.input.append(onnx.helper.make_tensor_value_info(name, elem, _mask_shape(model, mask)))
    present = {o.name for o in forced.graph.output}
    output_names = tuple(o.name for o in model.graph.output if o.name not in set(masks))
    forced.graph.output.extend(
        onnx.helper.make_tensor_value_info(m, types.get(m, onnx.TensorProto.FLOAT), None)
        for m in masks
        if m not in present
    )
    return ForcedGraph(
        forced, graph.input[0].name, output_names, tuple(masks), tuple(force_names), tuple(dtypes)
    )
