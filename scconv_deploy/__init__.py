"""scconv-deploy: SCConv networks from PyTorch to verified ONNX and TensorRT artefacts."""

from . import _logging  # noqa: F401  (installs the package logger's NullHandler)
from ._version import __version__
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .convert import ConvertedBlock, DeploySummary, deploy_summary, to_deploy
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
from .golden import Golden
from .modules import CRU, SRU, VARIANTS, ExportCRU, ExportScConv, ExportSRU, ScConv, ScConvConfig
from .onnx_export import ExportResult, export_onnx
from .verify import VerificationResult, compare

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
