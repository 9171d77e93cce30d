"""What a TensorRT command needs from the machine: the ``tensorrt`` package and a CUDA device.

Both are optional: nothing imports TensorRT at module level, and a command that needs it calls
``require_tensorrt()`` / ``require_cuda()`` first, which fail with one line saying what is missing
and how to get it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import ModuleType

from ..errors import DependencyError

_logger = logging.getLogger("scconv_deploy.trt")

INSTALL_TRT = "pip install 'scconv-deploy[trt]' --extra-index-url https://pypi.nvidia.com"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or ``DependencyError`` naming the install command."""
    try:
        import tensorrt
    except (ImportError, OSError) as err:  # OSError: the bindings without libnvinfer
        raise DependencyError(
            f"TensorRT is not installed ({_first_line(err)}): {INSTALL_TRT} (needs an NVIDIA GPU and driver)"
        ) from err
    return tensorrt


def installed_tensorrt_version() -> str | None:
    """The importable TensorRT's version, or None; never raises."""
    try:
        return require_tensorrt().__version__
    except DependencyError:
        return None


def require_cuda() -> None:
    """``DependencyError`` unless PyTorch sees a CUDA device (TensorRT runs on NVIDIA GPUs only)."""
    import torch

    if torch.cuda.is_available():
        return
    hint = (
        f"torch {torch.__version__} is a CPU-only build: install a CUDA build of torch"
        if torch.version.cuda is None
        else "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
    )
    raise DependencyError(f"no CUDA device: TensorRT needs an NVIDIA GPU and its driver ({hint})")


def cuda_device() -> tuple[str, str]:
    """Name and compute capability (``"9.0"``) of the current CUDA device."""
    import torch

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


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
