"""The CUDA device and driver, read from the NVIDIA driver library itself (``libcuda``), through ctypes.

No PyTorch and no CUDA toolkit: every machine that can run TensorRT has the driver library,
whichever CUDA major its TensorRT was built for, so this works alike for CUDA 12 and 13 builds.
``cuda_device()`` names the first visible device (``CUDA_VISIBLE_DEVICES`` selects it), its
compute capability and the newest CUDA the driver supports; ``CudaEvents`` times work on a
stream with CUDA events (runtime and driver handles are interchangeable). Anything that fails
becomes a ``DependencyError`` of one line naming the cause and the fix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DependencyError, EngineError

# CUresult values with their own advice (cuda.h)
_NO_DEVICE, _INSUFFICIENT_DRIVER, _NOT_INITIALIZED = 100, 35, 3
_ATTRIBUTE_CC_MAJOR, _ATTRIBUTE_CC_MINOR = 75, 76
_DRIVER_HINT = "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device as TensorRT sees it."""

    name: str  # "NVIDIA H100 80GB HBM3"; MIG slices and board variants have their own names
    compute_capability: str  # "9.0"
    driver_cuda: tuple[int, int]  # the newest CUDA the driver supports, e.g. (12, 8)

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")

    def __str__(self) -> str:
        return f"{self.name} ({self.sm}), driver for CUDA {self.driver_cuda[0]}.{self.driver_cuda[1]}"


def _library_names() -> list[str]:
    if sys.platform.startswith("win"):
        return ["nvcuda.dll"]
    found = ctypes.util.find_library("cuda")
    return ["libcuda.so.1", "libcuda.so", *([found] if found else [])]


@functools.cache
def driver_library() -> Any:
    """The loaded NVIDIA driver library; ``DependencyError`` where there is none (no driver installed)."""
    errors = []
    for name in _library_names():
        try:
            return ctypes.CDLL(name)
        except OSError as err:
            errors.append(str(err))
    raise DependencyError(
        f"no NVIDIA driver: {_library_names()[0]} does not load ({errors[0] if errors else 'not found'}): "
        "TensorRT needs an NVIDIA GPU with its driver installed (nvidia-smi must work)"
    )


class Driver:
    """The driver calls this package makes, each checked; ``lib``: ``driver_library()`` or a stand-in."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib

    def call(self, name: str, *args: Any) -> None:
        status = getattr(self._lib, name)(*args)
        if status:
            raise _failure(name, int(status))

    def int_out(self, name: str, *args: Any) -> int:
        value = ctypes.c_int(0)
        self.call(name, ctypes.byref(value), *args)
        return value.value

    def device(self, ordinal: int = 0) -> CudaDevice:
        self.call("cuInit", 0)
        handle = self.int_out("cuDeviceGet", ordinal)
        name = ctypes.create_string_buffer(256)
        self.call("cuDeviceGetName", name, 256, handle)
        major = self.int_out("cuDeviceGetAttribute", _ATTRIBUTE_CC_MAJOR, handle)
        minor = self.int_out("cuDeviceGetAttribute", _ATTRIBUTE_CC_MINOR, handle)
        version = self.int_out("cuDriverGetVersion")
        return CudaDevice(
            name.value.decode(errors="replace").strip(),
            f"{major}.{minor}",
            (version // 1000, version % 1000 // 10),
        )


def _failure(call: str, status: int) -> DependencyError:
    if status == _NO_DEVICE:
        return DependencyError(f"no CUDA device ({call}: CUDA_ERROR_NO_DEVICE): {_DRIVER_HINT}")
    if status == _INSUFFICIENT_DRIVER:
        return DependencyError(
            f"the NVIDIA driver is too old for this CUDA ({call}: CUDA_ERROR_INSUFFICIENT_DRIVER): "
            "upgrade the driver, or install the scconv-deploy extra for an older CUDA (the README's table)"
        )
    return DependencyError(f"CUDA driver call {call} failed with CUresult {status}: {_DRIVER_HINT}")


def cuda_device(driver: Driver | None = None) -> CudaDevice:
    """The first visible CUDA device; ``DependencyError`` (one line) when there is no usable one."""
    return (driver or Driver(driver_library())).device(0)


def require_cuda() -> CudaDevice:
    """A usable CUDA device, or ``DependencyError``: TensorRT runs on NVIDIA GPUs only."""
    return cuda_device()


class CudaEvents:
    """Two events: ``elapsed(stream, work)`` is the GPU time of ``work`` enqueued on ``stream``."""

    def __init__(self, driver: Driver | None = None) -> None:
        self._driver = driver or Driver(driver_library())
        self._events = []
        for _ in range(2):
            event = ctypes.c_void_p()
            self._driver.call("cuEventCreate", ctypes.byref(event), 0)
            self._events.append(event)

    def elapsed(self, stream: int, work: Callable[[], None]) -> float:
        """Seconds between an event recorded on ``stream`` before ``work`` and one recorded after it."""
        start, end = self._events
        self._driver.call("cuEventRecord", start, ctypes.c_void_p(stream))
        work()
        self._driver.call("cuEventRecord", end, ctypes.c_void_p(stream))
        self._driver.call("cuEventSynchronize", end)
        ms = ctypes.c_float(0.0)
        self._driver.call("cuEventElapsedTime", ctypes.byref(ms), start, end)
        if ms.value < 0:
            raise EngineError(f"CUDA events measured a negative time ({ms.value} ms)")
        return ms.value / 1e3

    def free(self) -> None:
        for event in self._events:
            self._driver.call("cuEventDestroy_v2", event)
        self._events = []
