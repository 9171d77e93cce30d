"""Exception hierarchy: every error the toolkit raises on purpose derives from ``ScconvDeployError``.

The CLI turns these into a one-line message and a non-zero exit code; library callers can catch
one base class. ``ConfigError`` is also a ``ValueError`` so that invalid constructor arguments
behave like any other bad value in PyTorch code.
"""

from __future__ import annotations


class ScconvDeployError(Exception):
    """Base class of all deliberate scconv-deploy errors."""


class ConfigError(ScconvDeployError, ValueError):
    """An invalid SCConv configuration (raised at construction, names the parameter and the fix)."""


class ConversionError(ScconvDeployError):
    """A module looks like SCConv but cannot be converted to the export form."""


class DependencyError(ScconvDeployError):
    """An optional dependency (TensorRT, CUDA, matplotlib, ...) is missing."""


class CheckpointError(ScconvDeployError):
    """A checkpoint file is missing, corrupt, untrusted or of an unknown layout."""


class ExportError(ScconvDeployError):
    """Exporting a network to ONNX failed."""


class EngineError(ScconvDeployError):
    """Building or loading a TensorRT engine failed."""


class VerificationError(ScconvDeployError):
    """Two artefacts disagree beyond what gate ties and rounding explain."""


class InputError(ScconvDeployError, ValueError):
    """An inference input or argument does not fit the model (dtype, shape, batch size)."""


class ModelError(ScconvDeployError):
    """A model cannot be loaded or run (missing file, unknown kind, backend failure, closed)."""


class ServeError(ScconvDeployError):
    """The server cannot start (the address is taken or not this machine's)."""
