"""Golden data: check inputs, PyTorch FP32 outputs and every gate decision, in one ``.npz``.

Written next to an exported ONNX file so that any later artefact (an FP16 ONNX, a TensorRT
engine, on a machine without PyTorch) can be checked against PyTorch. Besides inputs and
outputs it stores, per SRU block, the PyTorch gate decisions and which gates are *ties*
(``|r - t| < tie_guard``) as packed bits, and each sample's smallest gate margin per block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import VerificationError
from .gates import GateSpec, GateTap

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


def make_golden(
    deployed: nn.Module,
    inputs: np.ndarray,
    output_names: list[str],
    tie_guard: float = DEFAULT_TIE_GUARD,
    batch_size: int = 16,
) -> Golden:
    """Outputs and every gate decision of ``deployed`` (a ``to_deploy`` network) in PyTorch FP32.

    Outputs and decisions come from the same forward pass, so they are consistent with each
    other: the export form decides exactly as the original network except at ties, where no
    two implementations can be held to one decision (see ``conversion_error``).
    """
    tap = GateTap(deployed).eval()
    n_out = len(output_names)
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            chunks.append([t.numpy() for t in tap(torch.from_numpy(inputs[start : start + batch_size]))])
    columns = [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
    outputs, values = columns[:n_out], columns[n_out:]
    decisions, ties, margins = [], [], []
    for spec, r in zip(tap.specs, values, strict=True):
        m = np.abs(r - np.float32(spec.threshold))
        decisions.append(spec.decide(r))
        ties.append(m < tie_guard)
        margins.append(m.reshape(len(m), -1).min(axis=1))
    margin_table = np.stack(margins, axis=1) if margins else np.zeros((len(inputs), 0), np.float32)
    return Golden(inputs, outputs, output_names, tap.specs, decisions, ties, margin_table, tie_guard)


def conversion_error(original: nn.Module, golden: Golden, batch_size: int = 16) -> dict[str, float | int]:
    """How far the original network is from the golden (export form) outputs, per sample.

    Informational: where they differ beyond rounding, a gate tie was decided differently by the
    original's arithmetic (the golden margins say how close each sample's gates are).
    """
    worst = np.zeros(golden.samples)
    with torch.no_grad():
        for start in range(0, golden.samples, batch_size):
            y = original(torch.from_numpy(golden.inputs[start : start + batch_size]))
            for out, ref in zip(y if isinstance(y, (tuple, list)) else (y,), golden.outputs, strict=True):
                diff = np.abs(out.numpy() - ref[start : start + batch_size]).reshape(len(out), -1).max(axis=1)
                worst[start : start + batch_size] = np.maximum(worst[start : start + batch_size], diff)
    scale = max(float(np.abs(o).max()) for o in golden.outputs) or 1.0
    return {
        "max_abs": float(worst.max()),
        "samples_above_1e-5_relative": int((worst > 1e-5 * scale).sum()),
        "samples": golden.samples,
    }
