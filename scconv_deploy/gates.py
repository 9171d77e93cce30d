"""Reading every SRU gate of a deployed network: values, margins and decisions.

``GateTap(model)`` wraps a network converted by ``to_deploy`` so that its forward returns the
network's outputs followed by the gate values ``r`` of every SRU (in module order, which for the
feed-forward networks SCConv lives in is the execution order), read from the
export form's ``gate_probe``. Exported to ONNX it gives a *debug graph*: the deployed graph plus
one extra output per SRU, so any runtime's gate decisions can be counted exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn

from .errors import VerificationError
from .modules.export_form import ExportSRU


@dataclass(frozen=True)
class GateSpec:
    """One SRU of a network: where it is and how it decides."""

    name: str  # module path of the ExportSRU
    gate: str  # "hard" (r >= t) or "soft" (r > t)
    threshold: float  # float32 value of t

    def decide(self, r: np.ndarray) -> np.ndarray:
        """The boolean gate decision ``w1 == 1`` for gate values ``r``, as PyTorch takes it."""
        t = np.float32(self.threshold)
        return r >= t if self.gate == "hard" else r > t


def gate_specs(model: nn.Module) -> list[GateSpec]:
    """Every export-form SRU of ``model``, in module order."""
    return [
        GateSpec(name, m.gate, float(np.float32(m.gate_treshold)))
        for name, m in model.named_modules()
        if isinstance(m, ExportSRU)
    ]


class GateTap(nn.Module):
    """``model``'s outputs (flattened to a tuple) followed by each SRU's gate values."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.specs = gate_specs(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        seen: dict[int, torch.Tensor] = {}
        # Hooks live only for this call: the wrapped model stays free of side effects.
        hooks = [
            self.model.get_submodule(spec.name).gate_probe.register_forward_hook(
                lambda module, args, output, i=i: seen.__setitem__(i, output)
            )
            for i, spec in enumerate(self.specs)
        ]
        try:
            out = self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        outputs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return (*outputs, *(seen[i] for i in range(len(self.specs))))


GATE_METADATA_KEY = "scconv.gate_tensors"


def with_gate_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an exported ONNX model whose SRU gate values are graph outputs again.

    ``scconv-export`` records the names of the gate tensors in the metadata
    (``scconv.gate_tensors``); exposing them lets any runtime's gate decisions be counted
    exactly against golden data.
    """
    meta = {p.key: p.value for p in model.metadata_props}
    if GATE_METADATA_KEY not in meta:
        raise VerificationError(
            f"the model has no '{GATE_METADATA_KEY}' metadata: export it with scconv-export"
        )
    names = json.loads(meta[GATE_METADATA_KEY])
    produced = {o for node in model.graph.node for o in node.output}
    missing = [n for n in names if n not in produced]
    if missing:
        raise VerificationError(
            f"gate tensors {missing[:3]} are not in the graph (was it modified after export?)"
        )
    return expose_tensors(model, names)


def expose_tensors(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with the named intermediate tensors added as graph outputs (types inferred)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        types = {v.name: v.type.tensor_type.elem_type for v in inferred}
    except Exception:
        types = {}
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, types.get(n) or onnx.TensorProto.FLOAT, None)
        for n in names
        if n not in present
    )
    return exposed
