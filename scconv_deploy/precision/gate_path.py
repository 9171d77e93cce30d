"""Which nodes of an exported graph make up SCConv's gate path, read off the graph itself.

Starting from each SRU's gate tensor (named in the ``scconv.gate_tensors`` metadata: the gate value
``r`` of an exact gate, the decision margin ``q`` of a fast one) and its mask (``scconv.mask_tensors``,
where the graph records them):

* the *normalisation cone* — nodes walked backwards from the gate tensor and the mask whose
  outputs feed nothing but that cone (group-norm statistics, folded affine, the seed norm's
  shape-derived correction, the sigmoid, the step), stopping at the SRU input ``x``, which also
  feeds the gating products;
* the *decision cone* — nodes walked forwards from the gate tensor that read only values derived
  from it or constants (``Sub``/``Ceil``, and ``Max``/``Sub`` of the soft gate), stopping where the
  masks multiply ``x``;
* each CRU's *softmax chain* — the ``Softmax`` node and the pooling node(s) feeding it.

These nodes stay FP32 in reduced-precision artefacts: they decide, or weigh, a whole pixel.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import onnx

from ..errors import ExportError
from ..gates import MASK_METADATA_KEY, gate_tensor_names, mask_tensor_names

POOLING = {"GlobalAveragePool", "ReduceMean", "AveragePool"}
# Between the pooling and the softmax: layout-only nodes (a CRU may pool Y1 and Y2 apart and concatenate).
_PASS_THROUGH = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat"}


@dataclass(frozen=True)
class GatePath:
    nodes: frozenset[str]  # node names to keep in FP32
    gate_tensors: tuple[str, ...]  # r of each SRU, in order
    block_inputs: tuple[str, ...]  # the SRU input x of each SRU, in the same order


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (converters address nodes by name)."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def gate_path(model: onnx.ModelProto) -> GatePath:
    """The gate path of an ``scconv-export``-ed graph (see the module docstring)."""
    gates = tuple(gate_tensor_names(model))
    has_masks = any(p.key == MASK_METADATA_KEY for p in model.metadata_props)
    masks = tuple(mask_tensor_names(model)) if has_masks else (None,) * len(gates)
    ensure_node_names(model)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for i in node.input:
            consumers[i].append(node)
    constants = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    keep: set[str] = set()
    block_inputs = []
    for r, mask in zip(gates, masks, strict=True):
        seeds = [t for t in (r, mask) if t is not None]
        missing = [t for t in seeds if t not in producer]
        if missing:
            raise ExportError(
                f"gate tensor {missing[0]!r} is not produced by any node (was the graph modified?)"
            )
        frontier = [producer[t] for t in seeds]
        cone = {node.name for node in frontier}
        stops = []
        while frontier:  # backwards: include a producer when all its outputs' consumers are in the cone
            node = frontier.pop()
            for tensor in node.input:
                if not tensor or tensor in constants or tensor not in producer:
                    continue
                src = producer[tensor]
                if src.name in cone:
                    continue
                if all(c.name in cone for out in src.output for c in consumers[out]):
                    cone.add(src.name)
                    frontier.append(src)
                else:
                    stops.append(tensor)
        data_stops = [t for t in stops if t not in constants]
        block_inputs.append(max(set(data_stops), key=data_stops.count) if data_stops else "")
        derived, reached = {r}, set()
        frontier_t = [r]
        while frontier_t:  # forwards: nodes fed only by r-derived values and constants
            tensor = frontier_t.pop()
            for node in consumers[tensor]:
                if node.name in reached:
                    continue
                # the step to the mask is in the cone already (walked back from the mask): it derives too
                if node.name in cone or all(not i or i in derived or i in constants for i in node.input):
                    reached.add(node.name)
                    cone.add(node.name)
                    for out in node.output:
                        derived.add(out)
                        frontier_t.append(out)
        keep |= cone
    for node in graph.node:  # CRU: the softmax over pooled channels, and the pooling feeding it
        if node.op_type == "Softmax":
            keep.add(node.name)
            chain = [node]
            while chain:
                current = chain.pop()
                for tensor in current.input:
                    src = producer.get(tensor)
                    if (
                        src is not None
                        and src.name not in keep
                        and (src.op_type in POOLING or src.op_type in _PASS_THROUGH)
                    ):
                        keep.add(src.name)
                        if src.op_type not in POOLING:
                            chain.append(src)
    return GatePath(frozenset(keep), gates, tuple(block_inputs))
