"""The ``.onnx`` backend: an ONNX Runtime session on the providers asked for, or an error.

Providers come from ``device`` (or are given; the TensorRT EP by default only where TensorRT's
libraries load, imported first so that the EP finds them); their options from the model.
After the session exists, the providers ONNX Runtime activated are checked against the requested
ones, and its own fallback on a failing run (to the CPU, for good) is switched off, unless the
caller allows a fallback. With the TensorRT EP active, the input spec is bounded by its profile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..deps import require_onnxruntime
from ..errors import EngineError, ModelError, first_line
from .base import Model, TensorSpec, parse_metadata
from .providers import (
    CPU_PROVIDER,
    DEFAULT_MAX_BATCH,
    GPU_PROVIDERS,
    TENSORRT,
    OnnxFacts,
    Provider,
    check_active,
    choose_providers,
    default_cache_dir,
    load_tensorrt,
    profile_shapes,
    provider_names,
    with_options,
)

logger = logging.getLogger(__name__)

__all__ = ["CPU_PROVIDER", "GPU_PROVIDERS", "OnnxrtModel", "choose_providers"]

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


def _spec(arg) -> TensorSpec:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(f"tensor {arg.name!r} has type {arg.type}, which numpy cannot hold")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return TensorSpec(arg.name, np.dtype(dtype), shape)


def _bounded(spec: TensorSpec, facts: OnnxFacts, max_batch: int) -> TensorSpec:
    """The input spec within the TensorRT EP's profile (inputs outside it would fail in TensorRT)."""
    profile = profile_shapes(facts, max_batch)
    if profile is None or spec.name not in profile:
        return spec
    low, _, high = profile[spec.name]
    return TensorSpec(spec.name, spec.dtype, spec.shape, low, high)


def _tensorrt_facts(path: Path, cache: Path) -> OnnxFacts:
    """The model facts the TensorRT EP's options need, with its cache folder made."""
    try:
        facts = OnnxFacts.read(path)
    except EngineError as err:
        raise ModelError(f"ONNX Runtime cannot load {path}: {err}") from err
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"cannot create the TensorRT cache folder {cache}: {err.strerror or err}") from err
    return facts


class OnnxrtModel(Model):
    """An ONNX file in ONNX Runtime; ``run`` is thread-safe, so calls are not serialised."""

    platform = "onnxruntime_onnx"

    def __init__(
        self,
        path: Path,
        device: str = "auto",
        providers: Sequence[Provider] | None = None,
        *,
        allow_fallback: bool = False,
        max_batch: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        ort = require_onnxruntime()
        available = ort.get_available_providers()
        asked = provider_names(providers) if providers is not None else GPU_PROVIDERS
        tensorrt = TENSORRT in available and TENSORRT in asked and load_tensorrt()
        names = choose_providers(device, providers, available, tensorrt=tensorrt)
        batch = max_batch or DEFAULT_MAX_BATCH
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        facts = _tensorrt_facts(path, cache) if TENSORRT in names else None
        configured = with_options(names, providers, facts, batch, cache, ort.__version__)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=configured)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"ONNX Runtime cannot load {path}: {first_line(err)}") from err
        used = session.get_providers()
        for missing in check_active(path.name, names, used, allow_fallback):
            logger.warning("%s: %s did not load; running on %s (allowed)", path.name, missing, used)
        if not allow_fallback:
            session.disable_fallback()  # a failing run must not switch this session to the CPU for good
        logger.info("%s: execution providers %s (asked for %s)", path.name, used, names)
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path.name} has {len(inputs)} inputs; the runtime serves single-input models")
        self.providers = used
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]
        spec = _spec(inputs[0])
        if facts is not None and TENSORRT in used:
            spec = _bounded(spec, facts, batch)
        meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
        super().__init__(path, spec, [_spec(o) for o in session.get_outputs()], meta)

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise ModelError(f"{self.path.name} is closed")
        try:
            results = session.run(None, {self.input_spec.name: x})
        except Exception as err:  # shapes are validated; what is left is the runtime's own failure
            raise ModelError(f"ONNX Runtime failed on {self.path.name}: {first_line(err)}") from err
        return dict(zip(self._output_names, results, strict=True))

    def _close(self) -> None:
        self._session = None
