"""Golden data: check inputs, PyTorch FP32 outputs and every gate decision, in one ``.npz``.

Written next to an exported ONNX file so that any later artefact (an FP16 ONNX, a TensorRT
engine, on a machine without PyTorch) can be checked against PyTorch. This module needs numpy
only (``scconv_deploy.tap.make_golden`` records golden data in PyTorch).

Besides inputs and outputs it stores, per SRU block and gate element:

* the PyTorch decision (``w1 == 1``), as packed bits — verification feeds these back into the
  artefact (``scconv_deploy.verify``);
* the *margin class* of the gate value, ``|r - t|`` bucketed at ``margin_edges`` (the tie guard,
  then 1e-3, 1e-2, 1e-1): class 0 is a *tie*, which two correct runtimes may decide differently;
  a flip of a higher class says how far from its threshold the artefact moved a gate;

and each sample's smallest margin per block (for plots and reports), and the gate values ``r``
themselves at up to ``GATE_VALUE_SAMPLE`` elements of each block (``gate_value_index``), which an
FP32 check holds with decisions forced (``verify.tolerance.Tolerance.gate_atol``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VerificationError
from .gates import GateSpec

GOLDEN_VERSION = 2


def golden_beside(artefact: Path) -> Path:
    """Where ``scconv-export`` writes an artefact's golden data: ``model.onnx`` → ``model.golden.npz``
    (and where ``scconv-verify`` and ``scconv-trt`` look for it)."""
    return Path(artefact).with_suffix(".golden.npz")


DEFAULT_TIE_GUARD = 1e-4
#: Margin classes above the tie guard: a flip of a gate this far from its threshold needs more than rounding.
MARGIN_STEPS = (1e-3, 1e-2, 1e-1)


#: Gate values kept per block: all of them up to this many, else this many elements drawn at random.
GATE_VALUE_SAMPLE = 1 << 14


def gate_value_index(size: int) -> np.ndarray | None:
    """Which elements of a block's flattened gate tensor (all samples) golden data keeps the value of:
    ``None`` for all of them, else sorted indices drawn with a seed fixed by ``size`` (so a check
    with the same samples and shapes reads the same ones; random, so no stride aliases with a row)."""
    if size <= GATE_VALUE_SAMPLE:
        return None
    return np.unique(np.random.default_rng(size).integers(0, size, GATE_VALUE_SAMPLE))


def sample_gate_values(values: np.ndarray) -> np.ndarray:
    """The kept elements (``gate_value_index``) of a block's gate values, flattened, as float32."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    index = gate_value_index(flat.size)
    return flat if index is None else flat[index]


def margin_edges(tie_guard: float) -> tuple[float, ...]:
    """Class boundaries of ``|r - t|``: the tie guard, then the steps above it."""
    if not 0 < tie_guard < 1:
        raise VerificationError(f"tie guard {tie_guard:g} must lie in (0, 1)")
    return (float(tie_guard), *(s for s in MARGIN_STEPS if s > tie_guard))


def margin_classes(margins: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """``0`` for ``|r - t| < edges[0]`` (a tie), ``k`` for ``edges[k-1] <= |r - t| < edges[k]``, … (uint8)."""
    return np.searchsorted(np.asarray(edges, np.float32), margins, side="right").astype(np.uint8)


@dataclass
class Golden:
    inputs: np.ndarray  # (N, C, H, W) float32
    outputs: list[np.ndarray]  # PyTorch FP32 outputs of the export form (same pass as the decisions)
    output_names: list[str]
    gates: list[GateSpec]
    decisions: list[np.ndarray]  # per block, bool (N, C, H, W): w1 == 1
    classes: list[np.ndarray]  # per block, uint8 (N, C, H, W): margin class (0: a tie)
    margins: np.ndarray  # (N, blocks) smallest |r - t| of each sample in each block
    tie_guard: float = DEFAULT_TIE_GUARD
    meta: dict = field(default_factory=dict)
    # Per block, the gate values r PyTorch computed at the kept elements (``sample_gate_values``),
    # for the check of the gate arithmetic itself; None in files written before they were kept.
    gate_values: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def samples(self) -> int:
        return len(self.inputs)

    @property
    def edges(self) -> tuple[float, ...]:
        return margin_edges(self.tie_guard)

    @property
    def ties(self) -> list[np.ndarray]:
        """Per block: gates within the tie guard of their threshold."""
        return [c == 0 for c in self.classes]

    def tie_samples(self) -> np.ndarray:
        """Samples with at least one gate within ``tie_guard`` of its threshold."""
        return ~self.clear_samples(self.tie_guard)

    def clear_samples(self, guard: float) -> np.ndarray:
        """Samples whose every gate lies at least ``guard`` from its threshold."""
        if not self.gates:
            return np.ones(self.samples, dtype=bool)
        return (self.margins >= guard).all(axis=1)

    def check_source(self, metadata: dict[str, str], model: str, golden: str = "the golden data") -> None:
        """Refuse golden data made from another checkpoint than the one ``metadata`` (an ONNX model's,
        ``model`` in the message) records as ``source.sha256``."""
        want, have = metadata.get("source.sha256"), self.meta.get("source.sha256")
        if want and have and want != have:
            raise VerificationError(
                f"{golden} was made from checkpoint sha256 {have[:12]}…, {model} from {want[:12]}…"
            )

    def masks(self, block: int, rows: slice | np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
        """The mask tensor the export form computes from the reference's decisions, for ``rows``."""
        return self.gates[block].mask(self.decisions[block][rows], dtype)

    def save(self, path: Path) -> None:
        arrays = {"inputs": self.inputs, "margins": self.margins}
        for i, out in enumerate(self.outputs):
            arrays[f"output_{i}"] = out
        for i, (d, c) in enumerate(zip(self.decisions, self.classes, strict=True)):
            arrays[f"decisions_{i}"] = np.packbits(d.reshape(len(d), -1), axis=1)
            arrays[f"classes_{i}"] = c
        for i, values in enumerate(self.gate_values or []):
            arrays[f"gate_values_{i}"] = values
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
                version = header.get("version")
                if version != GOLDEN_VERSION:
                    raise VerificationError(
                        f"{path}: golden data version {version} is not supported (this version reads "
                        f"{GOLDEN_VERSION}): export the model again with scconv-export"
                    )
                shapes = header["gate_shapes"]

                def decisions(i: int) -> np.ndarray:
                    shape = shapes[i]
                    flat = np.unpackbits(data[f"decisions_{i}"], axis=1, count=int(np.prod(shape[1:])))
                    return flat.astype(bool).reshape(shape)

                return cls(
                    inputs=data["inputs"],
                    outputs=[data[f"output_{i}"] for i in range(len(header["output_names"]))],
                    output_names=header["output_names"],
                    gates=[GateSpec(**g) for g in header["gates"]],
                    decisions=[decisions(i) for i in range(len(shapes))],
                    classes=[data[f"classes_{i}"] for i in range(len(shapes))],
                    margins=data["margins"],
                    tie_guard=header["tie_guard"],
                    meta=header.get("meta", {}),
                    gate_values=(
                        [data[f"gate_values_{i}"] for i in range(len(shapes))]
                        if shapes and "gate_values_0" in data.files
                        else None
                    ),
                )
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
            raise VerificationError(f"{path} is not readable golden data: {err}") from err
