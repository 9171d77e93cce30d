"""Ways to break an exported ONNX file a little, for tests that prove a check fails when it should."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from scconv_deploy.gates import gate_tensor_names
from scconv_deploy.golden import Golden


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def shift_output(model: onnx.ModelProto, amount: float) -> onnx.ModelProto:
    """Every element of the first output moved by ``amount``."""
    model = _copy(model)
    out = model.graph.output[0].name
    raw = f"{out}__untampered"
    for node in model.graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
        node.input[:] = [raw if i == out else i for i in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.float32(amount), "tamper_shift"))
    model.graph.node.append(helper.make_node("Add", [raw, "tamper_shift"], [out], name="tamper"))
    return model


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    for init in model.graph.initializer:
        if init.name == name:
            return init
    raise KeyError(name)


def scale_last_conv(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    """The weights of the network's last convolution (in graph order) times ``factor``."""
    model = _copy(model)
    conv = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    init = _initializer(model, conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
    return model


def shift_sru_norm(model: onnx.ModelProto, amount: float, block: int, golden: Golden) -> onnx.ModelProto:
    """One SRU's norm shift plus ``amount``: ``amount`` added to its gate's input ``z``.

    (The folded shift ``beta·w`` is a constant added after the normalisation; where it is zero the
    exporter drops the addition, so the tamper adds its own.) An exact gate reads ``z`` through its
    sigmoid; a fast gate's tensor is ``q = k·(logit(t) - z)`` (``k``: the golden data's gate spec),
    which the shift moves by ``-k·amount``.
    """
    model = _copy(model)
    spec = golden.gates[block]
    gate = gate_tensor_names(model)[block]
    producer = {o: n for n in model.graph.node for o in n.output}
    if spec.fast:
        return _add_after(model, producer[gate], gate, -spec.margin_scale * amount)
    sigmoid = producer[gate]
    while sigmoid.op_type != "Sigmoid":  # past an Identity the exporter may put on a named output
        sigmoid = producer[sigmoid.input[0]]
    return _add_after(model, producer[sigmoid.input[0]], sigmoid.input[0], amount)


def _add_after(model: onnx.ModelProto, node: onnx.NodeProto, tensor: str, amount: float) -> onnx.ModelProto:
    """``model`` with ``amount`` added to ``tensor`` (an output of ``node``) for every consumer."""
    raw = f"{tensor}__untampered"
    node.output[:] = [raw if o == tensor else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.float32(amount), "tamper_norm_shift"))
    added = helper.make_node("Add", [raw, "tamper_norm_shift"], [tensor], name="tamper")
    nodes = list(model.graph.node)  # keep the graph topologically sorted: the Add right after its input
    nodes.insert(nodes.index(node) + 1, added)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
