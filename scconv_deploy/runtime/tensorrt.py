"""The ``.plan`` backend: a TensorRT engine through ``scconv_deploy.trt`` (imported on load; CUDA only).

The input spec is the engine's optimisation profile (dynamic dimensions bounded by its min and
max); output specs come from two probe runs at the profile's minimum and maximum shapes (a
dimension that differs between them is dynamic), which also warm the engine up. Metadata is the
ONNX metadata recorded in the sidecar ``MODEL.plan.json``. An execution context is not
thread-safe, so calls are serialised on a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import DependencyError, ModelError
from .base import Model, TensorSpec, parse_metadata

logger = logging.getLogger(__name__)


def trt_layer() -> ModuleType:
    """``scconv_deploy.trt`` (its TensorRT import happens when an engine is loaded)."""
    try:
        from .. import trt
    except ImportError as err:
        raise DependencyError(f"running a TensorRT engine needs scconv_deploy.trt: {err}") from err
    return trt


def sidecar_metadata(sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """The ONNX metadata an engine sidecar records, parsed; ``{}`` without a sidecar."""
    return parse_metadata(((sidecar or {}).get("onnx") or {}).get("metadata") or {})


def _output_specs(small: dict[str, np.ndarray], large: dict[str, np.ndarray]) -> list[TensorSpec]:
    return [
        TensorSpec(
            name,
            a.dtype,
            tuple(x if x == y else None for x, y in zip(a.shape, large[name].shape, strict=True)),
        )
        for name, a in small.items()
    ]


class TensorrtModel(Model):
    """A serialized TensorRT engine (``.plan``) on the current CUDA device."""

    platform = "tensorrt_plan"

    def __init__(
        self,
        path: Path,
        device: str = "auto",
        providers: Sequence[object] | None = None,
        *,
        check_compatibility: bool = True,
    ) -> None:
        if device == "cpu":
            raise ModelError(
                f"{path.name} is a TensorRT engine, which runs on a CUDA GPU only: load the ONNX"
            )
        if providers is not None:
            raise ModelError(
                "providers= selects ONNX Runtime execution providers: it does not apply to .plan"
            )
        trt = trt_layer()
        engine = trt.load_engine(path, check_compatibility=check_compatibility)
        try:
            if len(engine.inputs) != 1:
                raise ModelError(
                    f"{path.name} has {len(engine.inputs)} inputs; the runtime serves one-input models"
                )
            name, profile = next(iter(engine.inputs.items()))
            low, high = tuple(profile.min), tuple(profile.max)
            shape = tuple(lo if lo == hi else None for lo, hi in zip(low, high, strict=True))
            spec = TensorSpec(name, np.dtype(profile.dtype), shape, low, high)
            small = engine.infer({name: np.zeros(low, spec.dtype)})
            large = engine.infer({name: np.zeros(high, spec.dtype)})
            metadata = sidecar_metadata(trt.read_sidecar(path))
        except BaseException:
            engine.close()
            raise
        self._lock = threading.Lock()
        self._engine = engine
        logger.info("%s: TensorRT engine, input %s", path.name, spec.describe())
        super().__init__(path, spec, _output_specs(small, large), metadata)

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            if self._closed:
                raise ModelError(f"{self.path.name} is closed")
            return self._engine.infer({self.input_spec.name: x})

    def _close(self) -> None:
        with self._lock:
            self._engine.close()
