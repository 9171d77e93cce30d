"""Verification of artefacts against golden PyTorch data, sound at SCConv's gate ties.

``forced_graph`` (the artefact with PyTorch's decisions fed in), ``compare`` (arrays in, a
``VerificationResult`` out), ``verify_onnx``/``verify_file`` (an ONNX artefact in ONNX Runtime),
tolerances per precision. Needs numpy, onnx and onnxruntime — not PyTorch.
"""

from ..golden import golden_beside
from .artefact import verify_file
from .compare import BlockFlips, OutputError, Run, VerificationResult, View, compare
from .forced import FORCE_PREFIX, ForcedGraph, forced_graph
from .ort_check import artefact_precision, run_deployed, run_forced, verification_level, verify_onnx
from .tolerance import TOLERANCES, Tolerance, channel_scale, tolerance_for

__all__ = [
    "FORCE_PREFIX",
    "TOLERANCES",
    "BlockFlips",
    "ForcedGraph",
    "OutputError",
    "Run",
    "Tolerance",
    "VerificationResult",
    "View",
    "artefact_precision",
    "channel_scale",
    "compare",
    "forced_graph",
    "golden_beside",
    "run_deployed",
    "run_forced",
    "tolerance_for",
    "verification_level",
    "verify_file",
    "verify_onnx",
]
