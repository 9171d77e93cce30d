"""scconv-deploy: SCConv networks from PyTorch to verified ONNX and TensorRT artefacts."""

import importlib

from . import _logging  # noqa: F401  (installs the package logger's NullHandler)
from ._version import __version__
from .errors import (
    CheckpointError,
    ConfigError,
    ConversionError,
    DependencyError,
    EngineError,
    ExportError,
    ScconvDeployError,
    VerificationError,
)

# Everything else is imported on first use (PEP 562): the runtime and the server need neither
# torch nor the exporter, and `import scconv_deploy.runtime` should not pay for them.
_LAZY = {
    ".checkpoint": ("Checkpoint", "load_checkpoint", "save_checkpoint"),
    ".convert": ("ConvertedBlock", "DeploySummary", "deploy_summary", "to_deploy"),
    ".golden": ("Golden",),
    ".modules": (
        "CRU",
        "SRU",
        "VARIANTS",
        "ExportCRU",
        "ExportScConv",
        "ExportSRU",
        "ScConv",
        "ScConvConfig",
    ),
    ".onnx_export": ("ExportResult", "export_onnx"),
    ".verify": ("VerificationResult", "compare"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'scconv_deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CRU",
    "SRU",
    "VARIANTS",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "ConvertedBlock",
    "DependencyError",
    "DeploySummary",
    "EngineError",
    "ExportCRU",
    "ExportError",
    "ExportResult",
    "ExportSRU",
    "ExportScConv",
    "Golden",
    "ScConv",
    "ScConvConfig",
    "ScconvDeployError",
    "VerificationError",
    "VerificationResult",
    "__version__",
    "compare",
    "deploy_summary",
    "export_onnx",
    "load_checkpoint",
    "save_checkpoint",
    "to_deploy",
]
