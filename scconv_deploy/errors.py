"""Exception hierarchy: every error the toolkit raises on purpose derives from ``ScconvDeployError``.

The CLI turns these into a one-line message and a non-zero exit code; library callers can catch
one base class. ``ConfigError`` is also a ``ValueError`` so that invalid constructor arguments
behave like any other bad value in PyTorch code.
"""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): the cause
    a one-line error quotes from a library underneath."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


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


class InternalError(ScconvDeployError):
    """Something failed that no input explains: a bug, or a dependency misbehaving (exit code 3).

    Carries the pipeline stage it happened in; the original exception is its ``__cause__``.
    """

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        text = str(cause).strip().splitlines()
        detail = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
        super().__init__(f"internal error in step '{stage}': {detail}")


class ServeError(ScconvDeployError):
    """The server cannot start (the address is taken or not this machine's)."""
