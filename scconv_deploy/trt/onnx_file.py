"""What a build needs to know of an ONNX file, read without its external data: inputs, metadata, hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from .._files import read_onnx
from ..errors import EngineError

Dim = int | str  # a static size, or the name of a dynamic axis


@dataclass(frozen=True)
class OnnxInput:
    name: str
    dims: tuple[Dim, ...]  # ints are static; strings name a dynamic axis ("?" when unnamed)
    dtype: str  # numpy name, e.g. "float32"

    def __str__(self) -> str:
        return f"{self.name} {self.dtype} [{', '.join(map(str, self.dims))}]"


def dtype_name(elem_type: int) -> str:
    """ONNX element type → NumPy dtype name (``TensorProto.FLOAT`` → ``"float32"``)."""
    return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def read_inputs(model: onnx.ModelProto) -> list[OnnxInput]:
    """The graph's real inputs (initializers listed as inputs are left out)."""
    weights = {t.name for t in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.dim_value > 0 else (d.dim_param or "?") for d in tensor.shape.dim)
        inputs.append(OnnxInput(value.name, dims, dtype_name(tensor.elem_type)))
    return inputs


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def export_shapes(inputs: list[OnnxInput], metadata: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """The shape each input was exported with, where ``scconv-export``'s metadata records it."""
    try:
        shape = tuple(int(d) for d in json.loads(metadata["input.shape"]))
    except (KeyError, ValueError, TypeError):
        return {}
    name = metadata.get("input.name", inputs[0].name if len(inputs) == 1 else None)
    return {name: shape} if any(i.name == name and len(i.dims) == len(shape) for i in inputs) else {}


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The graph without external data (the plan needs shapes, types and metadata only)."""
    return read_onnx(Path(path), EngineError)


def file_sha256(path: Path, digest=None) -> str:
    """sha256 of a file, read in blocks (``digest``: a hashlib object to feed instead of a new one)."""
    digest = digest if digest is not None else hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(path: Path, model: onnx.ModelProto) -> str:
    """sha256 of an ONNX file and of the external data files its tensors name (``model``: the file's
    graph, as ``load_onnx`` reads it): what changes whenever the network computes something else."""
    from ..lint.graph import external_location, stored_tensors

    digest = hashlib.sha256()
    file_sha256(path, digest)
    files = {loc for t in stored_tensors(model.graph) if (loc := external_location(t)) is not None}
    for name in sorted(files):
        data = path.parent / name
        if data.is_file():  # a missing file fails where the weights are read, with its own error
            file_sha256(data, digest)
    return digest.hexdigest()
