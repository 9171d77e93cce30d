"""SCConv gates in an exported graph: how each SRU decides, and where its tensors are.

Every SRU of an exported network has two named tensors, recorded in the ONNX metadata:

* the *gate tensor* (``scconv.gate_tensors``) — how close each decision was: the gate value
  ``r = sigmoid(GN(x)·w)`` of an exact gate, or the decision margin ``q = k·(logit(t) - z)``
  (``z = GN(x)·w``, ``r = sigmoid(z)``) of a fast hard gate, which decides without the sigmoid
  (``scconv_deploy.modules.gate_forms``); ``GateSpec.values`` turns either into ``r``;
* the *mask* (``scconv.mask_tensors``), the float 0/1 tensor that is the gate's only decision:
  ``[r < t]`` for the hard gate (seed variant, whose decision is ``r >= t``) and ``[r > t]`` for
  the soft gate (HEAD variant).

Verification reads the masks to count decisions exactly and feeds the reference's masks back in
(``scconv_deploy.verify.forced``). This module needs numpy and onnx only: it runs where PyTorch is
not installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx

from .errors import VerificationError

GATE_METADATA_KEY = "scconv.gate_tensors"
MASK_METADATA_KEY = "scconv.mask_tensors"
GATE_PREFIX = "gate:"
MASK_PREFIX = "mask:"


@dataclass(frozen=True)
class GateSpec:
    """One SRU of a network: where it is, how it decides, and what its gate tensor holds."""

    name: str  # module path of the SRU
    gate: str  # "hard" (r >= t) or "soft" (r > t)
    threshold: float  # float32 value of t
    #: 0 for an exact gate, whose gate tensor holds r; k > 0 for a fast hard gate, whose gate tensor
    #: holds q = k·(logit(t) - z) and which decides r >= t as q <= 0.
    margin_scale: float = 0.0

    @property
    def fast(self) -> bool:
        return self.margin_scale > 0

    def values(self, tensor: np.ndarray) -> np.ndarray:
        """The gate values ``r`` (float32) behind a gate tensor: the tensor itself, or ``sigmoid(z)``."""
        tensor = np.asarray(tensor)
        if not self.fast:
            return tensor
        t = np.float64(np.float32(self.threshold))
        z = np.log(t / (1 - t)) - tensor.astype(np.float64) / self.margin_scale
        return (0.5 + 0.5 * np.tanh(z / 2)).astype(np.float32)  # sigmoid, without overflow

    def decide(self, tensor: np.ndarray) -> np.ndarray:
        """The boolean gate decision ``w1 == 1`` a gate tensor holds, as its SRU takes it."""
        if self.fast:
            return np.asarray(tensor) <= 0  # the mask step(q) is 0
        t = np.float32(self.threshold)
        return tensor >= t if self.gate == "hard" else tensor > t

    def mask(self, decisions: np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
        """The mask tensor the export form computes for these decisions (``[r < t]`` or ``[r > t]``)."""
        return (~decisions if self.gate == "hard" else decisions).astype(dtype)

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        """The decisions (``w1 == 1``) a mask tensor holds."""
        on = np.asarray(mask) > 0.5
        return ~on if self.gate == "hard" else on


def _metadata_list(model: onnx.ModelProto, key: str) -> list[str]:
    meta = {p.key: p.value for p in model.metadata_props}
    if key not in meta:
        raise VerificationError(
            f"the model has no '{key}' metadata: export it with this version of scconv-export"
        )
    return list(json.loads(meta[key]))


def gate_tensor_names(model: onnx.ModelProto) -> list[str]:
    """The SRU gate tensors (gate values or decision margins) of an exported model, in execution order."""
    return _metadata_list(model, GATE_METADATA_KEY)


def mask_tensor_names(model: onnx.ModelProto) -> list[str]:
    """The SRU mask tensors (the decisions) of an exported model, in execution order."""
    return _metadata_list(model, MASK_METADATA_KEY)


def _check_produced(model: onnx.ModelProto, names: list[str]) -> None:
    produced = {o for node in model.graph.node for o in node.output}
    missing = [n for n in names if n not in produced]
    if missing:
        raise VerificationError(
            f"gate tensors {missing[:3]} are not in the graph (was it modified after export?)"
        )


def with_gate_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an exported ONNX model whose SRU gate tensors are graph outputs again."""
    names = gate_tensor_names(model)
    _check_produced(model, names)
    return expose_tensors(model, names)


def with_mask_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an exported ONNX model whose SRU masks (its gate decisions) are graph outputs."""
    names = mask_tensor_names(model)
    _check_produced(model, names)
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
