"""``load(path)``: the backend for a model file, by its suffix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelError
from .base import Model
from .onnxrt import OnnxrtModel
from .tensorrt import TensorrtModel

DEVICES = ("auto", "cpu", "cuda")
BACKENDS: dict[str, type[Model]] = {".onnx": OnnxrtModel, ".plan": TensorrtModel, ".engine": TensorrtModel}


def load(path: str | Path, device: str = "auto", providers: Sequence[str] | None = None) -> Model:
    """Load ``MODEL.onnx`` (ONNX Runtime) or ``MODEL.plan`` (TensorRT) for inference.

    ``device``: ``"auto"`` (the GPU where the installed runtime has one, else the CPU), ``"cpu"``
    or ``"cuda"`` (an error without a GPU runtime). ``providers`` overrides the ONNX Runtime
    execution providers, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.
    """
    path = Path(path)
    if device not in DEVICES:
        raise ModelError(f"device={device!r} is unknown: use one of {', '.join(DEVICES)}")
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ModelError(f"{path}: unknown model kind {path.suffix!r}; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    return backend(path, device=device, providers=providers)
