"""Golden data: check inputs, PyTorch FP32 outputs and every gate decision, in one ``.npz``.

Written next to an exported ONNX file so that any later artefact (an FP16 ONNX, a TensorRT
engine, on a machine without PyTorch) can be checked against PyTorch; this module needs numpy
only (``scconv_deploy.tap.make_golden`` records golden data in PyTorch). Besides inputs and
outputs it stores, per SRU block, the PyTorch gate decisions and which gates are *ties*
(``|r - t| < tie_guard``) as packed bits, and each sample's smallest gate margin per block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VerificationError
from .gates import GateSpec

GOLDEN_VERSION = 1
DEFAULT_TIE_GUARD = 1e-4


@dataclass
class Golden:
    inputs: np.ndarray  # (N, C, H, W) float32
    outputs: list[np.ndarray]  # PyTorch FP32 outputs of the export form (same pass as the decisions)
    output_names: list[str]
    gates: list[GateSpec]
    decisions: list[np.ndarray]  # per block, bool (N, C, H, W)
    ties: list[np.ndarray]  # per block, bool: |r - t| < tie_guard
    margins: np.ndarray  # (N, blocks) smallest |r - t| of each sample in each block
    tie_guard: float = DEFAULT_TIE_GUARD
    meta: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.inputs)

    def tie_samples(self) -> np.ndarray:
        """Samples with at least one gate within ``tie_guard`` of its threshold."""
        if not self.gates:
            return np.zeros(self.samples, dtype=bool)
        return (self.margins < self.tie_guard).any(axis=1)

    def save(self, path: Path) -> None:
        arrays = {"inputs": self.inputs, "margins": self.margins}
        for i, out in enumerate(self.outputs):
            arrays[f"output_{i}"] = out
        for i, (d, t) in enumerate(zip(self.decisions, self.ties, strict=True)):
            arrays[f"decisions_{i}"] = np.packbits(d.reshape(len(d), -1), axis=1)
            arrays[f"ties_{i}"] = np.packbits(t.reshape(len(t), -1), axis=1)
        header = {
            "version": GOLDEN_VERSION,
            "output_names": self.output_names,
            "gates": [g.__dict__ for g in self.gates],
            "gate_shapes": [list(d.shape) for d in self.decisions],
            "tie_guard": self.tie_guard,
            "meta": self.meta,
        }
        with open(path, "wb") as f:  # np.savez_compressed would append ".npz" to a temp name
            np.savez_compressed(f, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Golden:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("version") != GOLDEN_VERSION:
                    raise VerificationError(
                        f"{path}: golden data version {header.get('version')} is not supported"
                    )
                shapes = header["gate_shapes"]

                def bits(key: str, i: int) -> np.ndarray:
                    shape = shapes[i]
                    flat = np.unpackbits(data[f"{key}_{i}"], axis=1, count=int(np.prod(shape[1:])))
                    return flat.astype(bool).reshape(shape)

                return cls(
                    inputs=data["inputs"],
                    outputs=[data[f"output_{i}"] for i in range(len(header["output_names"]))],
                    output_names=header["output_names"],
                    gates=[GateSpec(**g) for g in header["gates"]],
                    decisions=[bits("decisions", i) for i in range(len(shapes))],
                    ties=[bits("ties", i) for i in range(len(shapes))],
                    margins=data["margins"],
                    tie_guard=header["tie_guard"],
                    meta=header.get("meta", {}),
                )
        except (OSError, KeyError, ValueError) as err:
            raise VerificationError(f"{path} is not readable golden data: {err}") from err
