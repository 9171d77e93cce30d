"""The ``.onnx`` backend: an ONNX Runtime session, providers chosen from what is installed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DependencyError, ModelError
from .base import Model, TensorSpec, parse_metadata

logger = logging.getLogger(__name__)

# Preference order for device="auto"; the TensorRT EP builds an engine on the first run of each shape.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def choose_providers(device: str, providers: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The execution providers for a session: ``providers`` as given, else by ``device``."""
    if providers is not None:
        missing = [p for p in providers if p not in available]
        if missing or not providers:
            raise DependencyError(
                f"execution provider(s) {', '.join(missing) or '(none given)'} not available; "
                f"this onnxruntime has {', '.join(available)}"
            )
        return list(providers)
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if device == "cuda" and not gpu:
        raise DependencyError(
            f"device='cuda' needs onnxruntime-gpu (pip install 'scconv-deploy[gpu]'); "
            f"this onnxruntime has {', '.join(available)}"
        )
    return ([] if device == "cpu" else gpu) + [CPU_PROVIDER]


def _spec(arg) -> TensorSpec:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(f"tensor {arg.name!r} has type {arg.type}, which numpy cannot hold")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return TensorSpec(arg.name, np.dtype(dtype), shape)


class OnnxrtModel(Model):
    """An ONNX file in ONNX Runtime; ``run`` is thread-safe, so calls are not serialised."""

    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, device: str = "auto", providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        chosen = choose_providers(device, providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"ONNX Runtime cannot load {path}: {first}") from err
        used = session.get_providers()
        logger.info("%s: execution providers %s (asked for %s)", path.name, used, chosen)
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path.name} has {len(inputs)} inputs; the runtime serves single-input models")
        self.providers = used
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]
        meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
        super().__init__(path, _spec(inputs[0]), [_spec(o) for o in session.get_outputs()], meta)

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise ModelError(f"{self.path.name} is closed")
        try:
            results = session.run(None, {self.input_spec.name: x})
        except Exception as err:  # shapes are validated; what is left is the runtime's own failure
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"ONNX Runtime failed on {self.path.name}: {first}") from err
        return dict(zip(self._output_names, results, strict=True))

    def _close(self) -> None:
        self._session = None
