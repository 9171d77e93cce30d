"""``load_engine(path) -> Engine``: a TensorRT plan on NumPy arrays (TensorRT and a GPU; no PyTorch).

Device buffers, the CUDA stream and shape binding are Polygraphy's ``TrtRunner``'s; this module
adds what a deployment needs around it: the sidecar check before deserialising (TensorRT release
and build, compute capability, hardware compatibility level — ``check_compatibility=False``
skips it), input validation with one-line errors, outputs that belong to the caller (the runner
reuses its host buffers), and a timer with CUDA events on the runner's stream for the benchmark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import EngineError
from .cuda import CudaEvents
from .env import TrtHost, polygraphy_verbosity, require_trt_gpu, tensorrt_errors
from .profile import dims_text
from .sidecar import check_compatible, check_plan, read_sidecar, sidecar_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """An engine input: the shapes its optimisation profile admits and its dtype."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dtype: np.dtype

    def admits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True)
        )


def check_feed(name: str, inputs: dict[str, TensorSpec], feed: dict[str, Any]) -> dict[str, np.ndarray]:
    """``feed`` as contiguous arrays, refused in one line unless it holds every input with a dtype and shape
    the profile admits."""
    if sorted(feed) != sorted(inputs):
        raise EngineError(f"{name} takes inputs {sorted(inputs)}, got {sorted(feed)}")
    arrays = {}
    for tensor, spec in inputs.items():
        array = np.asarray(feed[tensor])
        if array.dtype != spec.dtype:
            raise EngineError(f"input '{tensor}' is {array.dtype}; the engine takes {spec.dtype}")
        if not spec.admits(array.shape):
            raise EngineError(
                f"input '{tensor}' has shape {dims_text(array.shape)}, outside the engine's profile "
                f"(min {dims_text(spec.min)}, max {dims_text(spec.max)})"
            )
        arrays[tensor] = np.ascontiguousarray(array)
    return arrays


def io_specs(trt: Any, engine: Any, name: str) -> tuple[dict[str, TensorSpec], list[str]]:
    """The engine's inputs (profile 0 and dtype) and output names, from the ``ICudaEngine``."""
    from polygraphy.datatype import DataType

    inputs: dict[str, TensorSpec] = {}
    outputs: list[str] = []
    for i in range(engine.num_io_tensors):
        tensor = engine.get_tensor_name(i)
        if engine.get_tensor_mode(tensor) != trt.TensorIOMode.INPUT:
            outputs.append(tensor)
            continue
        dtype = DataType.to_dtype(
            DataType.from_dtype(engine.get_tensor_dtype(tensor), source_module="tensorrt"), "numpy"
        )
        if dtype is None:
            raise EngineError(f"{name}: input '{tensor}' has a type NumPy cannot hold")
        lo, opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(tensor, 0))
        inputs[tensor] = TensorSpec(lo, opt, hi, np.dtype(dtype))
    return inputs, outputs


def deserialize(data: bytes, name: str) -> Any:
    """The ``ICudaEngine``. Polygraphy lets a version-compatible plan run its embedded lean runtime
    (host code): loading a plan means trusting it, as loading a pickle does."""
    from polygraphy.backend.trt import EngineFromBytes

    with polygraphy_verbosity(), tensorrt_errors(f"{name}: TensorRT cannot load this plan"):
        engine = EngineFromBytes(data)()
    if engine is None:
        raise EngineError(f"{name}: TensorRT cannot load this plan (see its log above)")
    return engine


class Engine:
    """A deserialised engine in a Polygraphy ``TrtRunner``; close it (or use ``with``) to free the GPU memory.

    Not thread-safe: one call at a time (the runtime's TensorRT backend serialises calls).
    """

    def __init__(self, data: bytes, sidecar: dict[str, Any] | None = None, name: str = "engine") -> None:
        from polygraphy.backend.trt import TrtRunner

        host = require_trt_gpu()
        self.name = name
        self.sidecar = sidecar
        engine = deserialize(data, name)
        self.inputs, self.outputs = io_specs(host.trt, engine, name)
        with (
            polygraphy_verbosity(),
            tensorrt_errors(f"{name}: TensorRT could not create an execution context"),
        ):
            runner = TrtRunner(engine, name=name)
            runner.activate()
        self._runner: Any = runner
        self._owned: list[Any] = []  # device buffers and events of timers, freed on close

    @property
    def trt_engine(self) -> Any:
        """The ``tensorrt.ICudaEngine`` (for inspection)."""
        return self._active().engine

    @property
    def trt_context(self) -> Any:
        """The ``tensorrt.IExecutionContext`` ``infer`` runs in."""
        return self._active().context

    def _active(self) -> Any:
        if self._runner is None:
            raise EngineError(f"{self.name} is closed")
        return self._runner

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on ``feed`` (every input, with the engine's dtype and a shape its profile admits)."""
        runner = self._active()
        arrays = check_feed(self.name, self.inputs, feed)
        with tensorrt_errors(f"{self.name}: TensorRT failed to run"):
            results = runner.infer(arrays, check_inputs=False)
        return {name: np.array(results[name], copy=True) for name in self.outputs}  # the runner reuses them

    def timer(self, feed: dict[str, np.ndarray]) -> Callable[[], float]:
        """A function that runs ``feed`` (copied to the device once) and returns the GPU time in seconds.

        CUDA events on the runner's stream bracket one inference: the interval holds the engine's
        work on the GPU and its enqueueing, not the input and output copies.
        """
        from polygraphy import cuda

        runner = self._active()
        device = {}
        for name, array in check_feed(self.name, self.inputs, feed).items():
            device[name] = cuda.DeviceArray(shape=array.shape, dtype=array.dtype)
            device[name].copy_from(array, stream=runner.stream)
        runner.stream.synchronize()
        events = CudaEvents()
        self._owned += [*device.values(), events]

        def work() -> None:
            with tensorrt_errors(f"{self.name}: TensorRT failed to run"):
                runner.infer(device, check_inputs=False, copy_outputs_to_host=False)

        return lambda: events.elapsed(runner.stream.ptr, work)

    def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            for resource in self._owned:
                resource.free()
            self._owned = []
            runner.deactivate()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_sidecar(path: Path, data: bytes, host: TrtHost, check_compatibility: bool) -> dict[str, Any] | None:
    """The plan's sidecar, checked to describe ``data`` and to fit this TensorRT and GPU."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        logger.warning(
            "%s: no sidecar (%s): TensorRT release and GPU not checked", path, sidecar_path(path).name
        )
        return None
    check_plan(sidecar, data, path)
    try:
        notes = check_compatible(sidecar, host.version, host.device.name, host.device.compute_capability)
    except EngineError as err:
        if check_compatibility:
            raise
        notes = [f"{err} (check skipped: TensorRT decides)"]
    for note in notes:
        logger.warning("%s: %s", path, note)
    return sidecar


def load_engine(path: str | Path, *, check_compatibility: bool = True) -> Engine:
    """Load a plan, refusing it when its sidecar says this TensorRT or GPU cannot run it.

    ``check_compatibility=False`` turns a refusal into a warning and leaves the verdict to
    TensorRT's deserialisation (which fails with one line where it cannot load the plan).
    """
    host = require_trt_gpu()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EngineError(f"{path}: cannot read it ({err.strerror or err})") from err
    sidecar = check_sidecar(path, data, host, check_compatibility)
    return Engine(data, sidecar, name=str(path))
