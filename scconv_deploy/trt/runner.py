"""``load_engine(path) -> Engine``: run a TensorRT plan on NumPy arrays (needs TensorRT and a GPU).

Loading refuses a plan whose sidecar names another TensorRT release or GPU model (see
``sidecar.check_compatible``) or describes another plan. ``Engine.infer`` takes and returns
NumPy arrays; device memory and the CUDA stream are PyTorch's, so CUDA events time the work
(``Engine.timer``, used by the benchmark).
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
from .env import cuda_device, polygraphy_verbosity, require_cuda, require_tensorrt
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


class Engine:
    """A deserialised engine with one execution context; close it (or use ``with``) to free the GPU memory."""

    def __init__(self, data: bytes, sidecar: dict[str, Any] | None = None, name: str = "engine") -> None:
        trt = require_tensorrt()
        require_cuda()
        import torch
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.datatype import DataType
        from polygraphy.exception import PolygraphyException

        self.name = name
        self.sidecar = sidecar
        try:
            with polygraphy_verbosity():
                self._engine = EngineFromBytes(data)()
        except PolygraphyException as err:
            raise EngineError(
                f"{name}: TensorRT cannot load this plan (built for another TensorRT?)"
            ) from err
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{name}: TensorRT could not create an execution context (GPU memory?)")
        self._torch = torch
        self._stream = torch.cuda.Stream()
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: list[str] = []
        self._torch_dtypes: dict[str, Any] = {}
        for i in range(self._engine.num_io_tensors):
            tensor = self._engine.get_tensor_name(i)
            dtype = DataType.from_dtype(self._engine.get_tensor_dtype(tensor), source_module="tensorrt")
            numpy_dtype = DataType.to_dtype(dtype, "numpy")
            if numpy_dtype is None:
                raise EngineError(f"{name}: tensor '{tensor}' is {dtype}, which NumPy cannot hold")
            self._torch_dtypes[tensor] = DataType.to_dtype(dtype, "torch")
            if self._engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                lo, opt, hi = (tuple(s) for s in self._engine.get_tensor_profile_shape(tensor, 0))
                self.inputs[tensor] = TensorSpec(lo, opt, hi, np.dtype(numpy_dtype))
            else:
                self.outputs.append(tensor)

    @property
    def trt_engine(self) -> Any:
        """The ``tensorrt.ICudaEngine`` (for inspection)."""
        return self._engine

    @property
    def trt_context(self) -> Any:
        """The ``tensorrt.IExecutionContext`` ``infer`` runs in."""
        return self._context

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on ``feed`` (every input, with the engine's dtype and a shape its profile admits)."""
        with self._torch.cuda.stream(self._stream):
            buffers = self._prepare(feed)
            self._bind(buffers)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError(f"{self.name}: TensorRT failed to run (see its log above)")
            return {name: buffers[name].cpu().numpy() for name in self.outputs}

    def timer(self, feed: dict[str, np.ndarray]) -> Callable[[], float]:
        """A function that runs ``feed`` (already on the device) once and returns the GPU time in seconds."""
        cuda = self._torch.cuda
        with cuda.stream(self._stream):
            buffers = self._prepare(feed)
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)

        def run() -> float:
            self._bind(buffers)  # other timers may have bound other shapes in between
            start.record(self._stream)
            ok = self._context.execute_async_v3(self._stream.cuda_stream)
            end.record(self._stream)
            end.synchronize()
            if not ok:
                raise EngineError(f"{self.name}: TensorRT failed to run (see its log above)")
            return start.elapsed_time(end) / 1e3

        return run

    def _prepare(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """Device copies of the inputs and fresh output buffers of the shapes they imply."""
        if self._context is None:
            raise EngineError(f"{self.name} is closed")
        if sorted(feed) != sorted(self.inputs):
            raise EngineError(f"{self.name} takes inputs {sorted(self.inputs)}, got {sorted(feed)}")
        buffers: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            array = np.asarray(feed[name])
            if array.dtype != spec.dtype:
                raise EngineError(f"input '{name}' is {array.dtype}; the engine takes {spec.dtype}")
            if not spec.admits(array.shape):
                raise EngineError(
                    f"input '{name}' has shape {dims_text(array.shape)}, outside the engine's profile "
                    f"(min {dims_text(spec.min)}, max {dims_text(spec.max)})"
                )
            buffers[name] = self._torch.from_numpy(np.ascontiguousarray(array)).cuda()
            self._set_shape(name, array.shape)
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            if min(shape, default=0) < 0:
                raise EngineError(f"{self.name}: the shape of output '{name}' is data-dependent ({shape})")
            buffers[name] = self._torch.empty(shape, dtype=self._torch_dtypes[name], device="cuda")
        return buffers

    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            raise EngineError(f"{self.name}: TensorRT refused shape {dims_text(shape)} for input '{name}'")

    def _bind(self, buffers: dict[str, Any]) -> None:
        for name in self.inputs:
            self._set_shape(name, tuple(buffers[name].shape))
        for name, tensor in buffers.items():
            self._context.set_tensor_address(name, tensor.data_ptr())

    def close(self) -> None:
        self._context = None
        self._engine = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def load_engine(path: str | Path) -> Engine:
    """Load a plan, refusing it when its sidecar says it was built for another TensorRT or GPU."""
    trt = require_tensorrt()
    require_cuda()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EngineError(f"{path}: cannot read it ({err.strerror or err})") from err
    sidecar = read_sidecar(path)
    if sidecar is None:
        logger.warning(
            "%s: no sidecar (%s): TensorRT release and GPU not checked", path, sidecar_path(path).name
        )
    else:
        check_plan(sidecar, data, path)
        check_compatible(sidecar, trt.__version__, *cuda_device())
    return Engine(data, sidecar, name=str(path))
