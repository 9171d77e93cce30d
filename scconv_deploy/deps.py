"""Optional dependencies: import them on first use, or fail with one line naming the extra to install.

The base install is the deployment side (ONNX files, plans and golden data; no PyTorch). ONNX
Runtime comes as one extra per flavour — ``onnxruntime`` (CPU) and ``onnxruntime-gpu`` install
the same ``onnxruntime`` module and break each other when both are present — and the export
side's PyTorch stack as the ``export`` extra. TensorRT has its own checks (``scconv_deploy.trt.env``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from types import ModuleType

from .errors import DependencyError

INSTALL_ORT = "pip install 'scconv-deploy[cpu]' (CPU) or a GPU extra such as 'scconv-deploy[trt11-cu12]'"
INSTALL_EXPORT = "pip install 'scconv-deploy[export,cpu]' (add torch==VERSION first to pick a build)"
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")


def installed_onnxruntimes() -> list[str]:
    """The ONNX Runtime distributions pip installed (more than one means they overwrote each other)."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return found


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or ``DependencyError`` naming the extras that install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise DependencyError(f"ONNX Runtime is not installed ({err}): {INSTALL_ORT}") from err
    return onnxruntime


def require_torch(command: str) -> None:
    """``DependencyError`` unless PyTorch imports: ``command`` belongs to the export side."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise DependencyError(
            f"{command} runs on the export side and needs PyTorch ({err}): {INSTALL_EXPORT}; deployment "
            "hosts run the artefacts without it (scconv-verify, scconv-trt, scconv-serve, scconv-triton)"
        ) from err
