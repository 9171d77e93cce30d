"""``load(path)``: the backend for a model file, by its suffix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelError
from .base import Model
from .onnxrt import OnnxrtModel
from .providers import Provider
from .tensorrt import TensorrtModel

DEVICES = ("auto", "cpu", "cuda")
BACKENDS: dict[str, type[Model]] = {".onnx": OnnxrtModel, ".plan": TensorrtModel, ".engine": TensorrtModel}


def load(
    path: str | Path,
    device: str = "auto",
    providers: Sequence[Provider] | None = None,
    *,
    allow_fallback: bool = False,
    max_batch: int | None = None,
    cache_dir: str | Path | None = None,
    check_compatibility: bool = True,
) -> Model:
    """Load ``MODEL.onnx`` (ONNX Runtime) or ``MODEL.plan`` (TensorRT) for inference.

    ``device``: ``"auto"`` (the GPU where the installed runtime has one, else the CPU), ``"cpu"``
    or ``"cuda"`` (an error without a GPU runtime).

    ONNX Runtime only: ``providers`` overrides the execution providers, as names or
    ``(name, options)`` pairs whose options win over the ones derived from the model;
    ``allow_fallback`` lets a session run without a requested provider that failed to load (an
    error otherwise); ``max_batch`` is the largest batch the TensorRT EP's profile takes (default
    64); ``cache_dir`` holds its engine and timing caches (default ``~/.cache/scconv-deploy/...``).

    TensorRT only: ``check_compatibility=False`` loads a plan whose sidecar names another TensorRT
    release or compute capability (TensorRT then decides).
    """
    path = Path(path)
    if device not in DEVICES:
        raise ModelError(f"device={device!r} is unknown: use one of {', '.join(DEVICES)}")
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ModelError(f"{path}: unknown model kind {path.suffix!r}; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if max_batch is not None and max_batch < 1:
        raise ModelError(f"max_batch={max_batch} must be at least 1")
    if backend is OnnxrtModel:
        return OnnxrtModel(
            path, device, providers, allow_fallback=allow_fallback, max_batch=max_batch, cache_dir=cache_dir
        )
    return TensorrtModel(path, device, providers, check_compatibility=check_compatibility)
