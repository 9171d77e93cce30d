"""What a TensorRT command needs from the machine: the ``tensorrt`` package, a GPU, and a driver for its CUDA.

Nothing imports TensorRT at module level. A command that needs it calls ``require_tensorrt()``
(the module) or ``require_trt_gpu()`` (the module, the device, and a driver new enough for the
CUDA major TensorRT was built for), which fail with one line saying what is missing and how to
get it — before TensorRT gets the chance to fail later as a traceback from builder or runtime
creation. ``tensorrt_errors`` turns what TensorRT and Polygraphy raise into one-line
``EngineError``s naming the likely cause and the fix.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from ..errors import DependencyError, EngineError, ScconvDeployError, first_line
from .cuda import CudaDevice, require_cuda

_logger = logging.getLogger("scconv_deploy.trt")

NVIDIA_INDEX = "--extra-index-url https://pypi.nvidia.com"
# The extras and what each needs from the driver (README: "Installing").
EXTRAS = {
    "trt10-cu12": "TensorRT 10 for CUDA 12 (driver r535+)",
    "trt11-cu12": "TensorRT 11 for CUDA 12 (driver r535+)",
    "trt11-cu13": "TensorRT 11 for CUDA 13 (driver r580+)",
}
INSTALL_TRT = (
    f"pip install 'scconv-deploy[trt11-cu12]' {NVIDIA_INDEX} (or trt10-cu12, trt11-cu13: see the README)"
)
# Driver needed for each CUDA major the TensorRT wheels are built for.
DRIVER_FOR_CUDA = {12: "r535", 13: "r580"}


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or ``DependencyError`` naming what failed and the install command."""
    try:
        import tensorrt
    except ImportError as err:
        raise DependencyError(f"TensorRT is not installed ({first_line(err)}): {INSTALL_TRT}") from err
    except OSError as err:  # the bindings without their libnvinfer (a missing or mismatched -libs wheel)
        raise DependencyError(
            f"TensorRT's libraries do not load ({first_line(err)}): reinstall one extra, {INSTALL_TRT}"
        ) from err
    return tensorrt


def tensorrt_cuda_major() -> int | None:
    """The CUDA major of the installed TensorRT wheels (12, 13); None where pip did not install them."""
    for major in (13, 12):
        for name in (f"tensorrt-cu{major}-libs", f"tensorrt_cu{major}_libs", f"tensorrt-cu{major}"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                importlib.metadata.distribution(name)
                return major
    return None


def check_driver(trt_version: str, cuda_major: int | None, device: CudaDevice) -> None:
    """Refuse a driver older than the CUDA the TensorRT wheels need (TensorRT fails obscurely there)."""
    if cuda_major is None or device.driver_cuda[0] >= cuda_major:
        return
    older = [extra for extra in EXTRAS if extra.endswith(f"cu{device.driver_cuda[0]}")]
    alternative = f", or install the {older[-1]} extra" if older else ""
    raise DependencyError(
        f"TensorRT {trt_version} is built for CUDA {cuda_major}, but this NVIDIA driver supports CUDA "
        f"{device.driver_cuda[0]}.{device.driver_cuda[1]} at most: upgrade the driver to "
        f"{DRIVER_FOR_CUDA.get(cuda_major, 'a newer release')} or newer{alternative}"
    )


@dataclass(frozen=True)
class TrtHost:
    """TensorRT and the GPU it will run on, checked to fit each other."""

    trt: ModuleType
    device: CudaDevice

    @property
    def version(self) -> str:
        return self.trt.__version__

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def require_trt_gpu() -> TrtHost:
    """TensorRT, a CUDA device, and a driver for TensorRT's CUDA; ``DependencyError`` (one line) otherwise."""
    trt = require_tensorrt()
    device = require_cuda()
    check_driver(trt.__version__, tensorrt_cuda_major(), device)
    return TrtHost(trt, device)


# What TensorRT's (and Polygraphy's) messages say → the cause and the fix, for one line.
_CAUSES = (
    (
        ("nullptr", "CUDA initialization failure", "insufficient driver", "cudaErrorInsufficientDriver"),
        "TensorRT could not initialise CUDA: the driver is too old for this TensorRT's CUDA, or the GPU is "
        "not usable (nvidia-smi; the README's driver table)",
    ),
    (
        ("out of memory", "OutOfMemory", "cudaErrorMemoryAllocation", "Requested amount of GPU memory"),
        "the GPU ran out of memory: free it, or lower --workspace and the profile's maximum shapes",
    ),
    (
        (
            "version tag",
            "Version tag",
            "magicTag",
            "Serialization assertion",
            "incompatible",
            "not compatible",
        ),
        "the plan was built by another TensorRT release or for another GPU: rebuild it here "
        "(scconv-trt build)",
    ),
    (
        ("Failed to parse ONNX", "parse ONNX", "ONNX parser"),
        "TensorRT's ONNX parser rejected the model: scconv-trt lint names what it cannot take",
    ),
)


def explain(err: BaseException) -> str:
    """``err``'s first line, followed by the cause and fix its message points to (else where to look)."""
    text = str(err)
    for needles, cause in _CAUSES:
        if any(n in text for n in needles):
            return f"{first_line(err)} — {cause}"
    return f"{first_line(err)} (TensorRT's log above says more; -v shows it all)"


@contextlib.contextmanager
def tensorrt_errors(doing: str) -> Iterator[None]:
    """What TensorRT, Polygraphy or their bindings raise while ``doing`` becomes a one-line EngineError."""
    try:
        yield
    except ScconvDeployError:
        raise
    except Exception as err:  # pybind11 TypeErrors, PolygraphyException, RuntimeError, ...
        raise EngineError(f"{doing}: {explain(err)}") from err


@contextlib.contextmanager
def polygraphy_verbosity() -> Iterator[None]:
    """Polygraphy's (and, through it, TensorRT's) log level following the package logger's."""
    from polygraphy.logger import G_LOGGER

    if _logger.isEnabledFor(logging.DEBUG):
        level = G_LOGGER.VERBOSE
    elif _logger.isEnabledFor(logging.INFO):
        level = G_LOGGER.INFO
    else:
        level = G_LOGGER.WARNING
    with G_LOGGER.verbosity(level):
        yield
