"""The contract every backend shares: tensor specs, input validation, normalisation, batching.

A backend subclasses ``Model``, builds its specs and metadata when loading and overrides
``_infer`` (and ``_close``). Everything a caller can get wrong is checked here, once, before a
backend sees the input: dtype, rank and every dimension against the input spec (the engine
profile's range for TensorRT), with one line naming what was expected and what came.

Thread safety: ``Model.__call__``/``infer`` may be called from many threads at once. The base
class keeps no per-call state; each backend makes its ``_infer`` safe (ONNX Runtime sessions
are thread-safe for ``run``; the TensorRT backend serialises calls on its execution context).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, ModelError

DEFAULT_BATCH = 64  # predict_batches' chunk size when the model puts no bound on the batch


def _dim(size: int | None, low: int | None, high: int | None) -> str:
    if size is not None:
        return str(size)
    if low is not None and high is not None:
        return f"{low}..{high}"
    return "?"


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: dtype and shape, ``None`` for a dynamic dimension.

    ``min_shape``/``max_shape`` bound the dynamic dimensions where the backend knows them (a
    TensorRT optimisation profile); ONNX Runtime leaves them ``None`` (unbounded).
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        """E.g. ``float32 (?, 1, 32, 32)`` or ``float32 (1..64, 1, 32, 32)``."""
        lows = self.min_shape or (None,) * len(self.shape)
        highs = self.max_shape or (None,) * len(self.shape)
        dims = ", ".join(_dim(*d) for d in zip(self.shape, lows, highs, strict=True))
        return f"{self.dtype} ({dims})"

    def accepts(self, dtype: np.dtype, shape: Sequence[int]) -> bool:
        if dtype != self.dtype or len(shape) != len(self.shape):
            return False
        lows = self.min_shape or (0,) * len(shape)
        highs = self.max_shape or (None,) * len(shape)
        return all(
            (want is None or got == want) and got >= low and (high is None or got <= high)
            for got, want, low, high in zip(shape, self.shape, lows, highs, strict=True)
        )

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """(smallest, largest or None) batch the spec admits, from its first dimension."""
        if self.shape[0] is not None:
            return self.shape[0], self.shape[0]
        low = self.min_shape[0] if self.min_shape else 1
        return max(low, 1), self.max_shape[0] if self.max_shape else None


def parse_metadata(entries: Mapping[str, str]) -> dict[str, Any]:
    """ONNX ``metadata_props`` (strings) → values: JSON where a value parses as JSON, else the string."""
    parsed: dict[str, Any] = {}
    for key, value in entries.items():
        try:
            parsed[key] = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            parsed[key] = value
    return parsed


def normalize_images(
    images: np.ndarray, spec: TensorSpec, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) → model input (N, C, H, W) float32: ``(x/255 - mean)/std``.

    The same arithmetic as the export's check inputs (``scconv_deploy.calibration``), without
    resizing or channel conversion: images must already have the model's size and channels.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise InputError(f"normalize=True takes uint8 images N×H×W or N×H×W×C, got {got}")
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x[..., None] if x.ndim == 3 else x).transpose(0, 3, 1, 2)
    want = spec.shape[1:]
    if len(want) != 3:
        raise InputError(f"normalize=True needs an N×C×H×W model input, the model takes {spec.describe()}")
    if want[0] is not None and x.shape[1] != want[0]:
        raise InputError(f"images have {x.shape[1]} channel(s), the model takes {want[0]}")
    if any(w is not None and w != g for w, g in zip(want[1:], x.shape[2:], strict=True)):
        raise InputError(
            f"images are {x.shape[2]}×{x.shape[3]}, the model takes {want[1]}×{want[2]}: resize them first"
        )
    mean_ = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std_ = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    if mean_.shape[1] not in (1, x.shape[1]) or std_.shape[1] not in (1, x.shape[1]):
        raise InputError(f"mean/std have {mean_.shape[1]}/{std_.shape[1]} values for {x.shape[1]} channel(s)")
    return np.ascontiguousarray((x - mean_) / std_)


class Model(abc.ABC):
    """A loaded model: call it with an array, get an array (one output) or a dict of outputs."""

    platform: ClassVar[str]  # Triton's platform string, e.g. "onnxruntime_onnx"

    def __init__(
        self, path: Path, input_spec: TensorSpec, output_specs: Sequence[TensorSpec], metadata: dict[str, Any]
    ) -> None:
        self.path = path
        self.input_spec = input_spec
        self.output_specs = tuple(output_specs)
        self.metadata = metadata
        self._closed = False

    # -- the contract --------------------------------------------------------------------------
    @abc.abstractmethod
    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run one validated input; outputs by name, in the model's output order."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release backend resources (called once)."""

    # -- public API ----------------------------------------------------------------------------
    def validate(self, x: Any) -> np.ndarray:
        """``x`` itself if it fits the input spec, else ``InputError`` naming expected and got."""
        spec = self.input_spec
        if not isinstance(x, np.ndarray):
            raise InputError(f"input {spec.name!r}: expected a numpy array, got {type(x).__name__}")
        if not spec.accepts(x.dtype, x.shape):
            got = f"{x.dtype} ({', '.join(map(str, x.shape))})"
            raise InputError(f"input {spec.name!r}: expected {spec.describe()}, got {got}")
        return x

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W[, C]) → model input, with the mean/std recorded in the metadata."""
        mean, std = self.metadata.get("mean"), self.metadata.get("std")
        if mean is None or std is None:
            raise InputError(f"{self.path.name} records no mean/std: pass model inputs (normalize=False)")
        return normalize_images(images, self.input_spec, mean, std)

    def infer(self, x: np.ndarray, *, normalize: bool = False) -> dict[str, np.ndarray]:
        """All outputs by name (``__call__`` returns a single output as an array)."""
        if self._closed:
            raise ModelError(f"{self.path.name} is closed")
        return self._infer(self.validate(self.preprocess(x) if normalize else x))

    def __call__(self, x: np.ndarray, *, normalize: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        outputs = self.infer(x, normalize=normalize)
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def predict_batches(
        self, x: np.ndarray, batch_size: int | None = None, *, normalize: bool = False
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The model on a large array, ``batch_size`` rows at a time (padded up to a fixed/minimum batch).

        ``batch_size`` defaults to the model's largest batch (a fixed batch, the engine profile's
        maximum) or 64; one outside what the model admits raises ``InputError``.
        """
        if not isinstance(x, np.ndarray) or x.ndim == 0 or len(x) == 0:
            raise InputError("predict_batches needs a non-empty array (rows along the first axis)")
        low, high = self.input_spec.batch_range
        step = batch_size if batch_size is not None else (high or max(low, DEFAULT_BATCH))
        if step < low or (high is not None and step > high):
            admits = f"{low}" if low == high else f"{low}..{high or '∞'}"
            raise InputError(f"batch_size {step}: {self.path.name} takes batches of {admits}")
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, len(x), step):
            chunk = self.preprocess(x[start : start + step]) if normalize else x[start : start + step]
            n = len(chunk)
            if n < low:  # fixed or minimum batch: pad, then drop the padding
                chunk = np.concatenate([chunk, np.zeros((low - n, *chunk.shape[1:]), chunk.dtype)])
            parts.append({k: v[:n] for k, v in self.infer(chunk).items()})
        outputs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        specs = [f"{s.name}: {s.describe()}" for s in (self.input_spec, *self.output_specs)]
        return f"{type(self).__name__}({self.path.name}, {specs[0]} -> {', '.join(specs[1:])})"
