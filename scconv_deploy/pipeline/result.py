"""What an export produced: the result object the API returns and the JSON report written beside it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..checkpoint import Checkpoint
from ..precision import PrecisionCheck
from ..verify import VerificationResult
from .check import Fp32Check
from .data import Inputs
from .network import Network
from .options import ExportOptions


@dataclass
class ExportResult:
    targets: dict[str, Path]  # "onnx", "golden", "report" (and plots)
    checkpoint: Checkpoint
    network: Network
    options: ExportOptions
    artefact: onnx.ModelProto
    inputs: Inputs
    check: Fp32Check | None
    precision_check: PrecisionCheck | None
    lint: Any  # scconv_deploy.lint.LintReport
    float_layers: list[str] = field(default_factory=list)  # INT8: quantizable nodes kept FP32 (outputs)
    report: dict[str, Any] | None = None

    @property
    def onnx_path(self) -> Path:
        return self.targets["onnx"]

    @property
    def golden_path(self) -> Path | None:
        return self.targets["golden"] if self.check is not None else None

    @property
    def report_path(self) -> Path:
        return self.targets["report"]

    @property
    def verification(self) -> VerificationResult | None:
        return self.check.verification if self.check is not None else None

    @property
    def verified(self) -> bool:
        """Checked against PyTorch, and every check passed."""
        return self.check is not None and self.ok

    @property
    def ok(self) -> bool:
        """No check failed (an export without a check is ok, not verified)."""
        check_ok = self.check is None or self.check.passed
        precision_ok = self.precision_check is None or self.precision_check.passed
        return self.lint.ok and check_ok and precision_ok

    @property
    def plot_paths(self) -> list[Path]:
        return [p for k, p in self.targets.items() if k in ("gate_margins", "errors")]


def _graph_stats(model: onnx.ModelProto) -> dict[str, Any]:
    ops = Counter(n.op_type for n in model.graph.node)
    return {"nodes": sum(ops.values()), "ops": dict(sorted(ops.items())), "bytes": model.ByteSize()}


def build_report(result: ExportResult, stage_times: dict[str, float], cpu: str, seconds: float) -> str:
    """The report (JSON text), also kept as ``result.report``."""
    ckpt, opts, network = result.checkpoint, result.options, result.network
    check = result.check
    report: dict[str, Any] = {
        "ok": result.ok,
        "verified": result.verified,
        "onnx": str(result.onnx_path),
        "golden": str(result.golden_path) if result.golden_path else None,
        "source": {"path": str(ckpt.path), "sha256": ckpt.sha256, "layout": ckpt.layout, "arch": ckpt.arch},
        "input": {"name": "input", "shape": list(network.shape), "dynamic": opts.dynamic},
        "export": {
            "exporter": opts.exporter,
            "opset": opts.opset,
            "simplified": opts.simplify,
            "precision": opts.precision,
        },
        "scconv": {
            "count": network.summary.count,
            "variants": network.summary.variants,
            "blocks": [b.name for b in network.summary.blocks],
        },
        "graph": _graph_stats(result.artefact),
        "check": None,
        "precision": result.precision_check.to_dict() if result.precision_check is not None else None,
        "calibration": {"data": result.inputs.calibration_source, "float_layers": result.float_layers}
        if result.inputs.calibration is not None
        else None,
        "lint": result.lint.to_dict(),
        "plots": [str(p) for p in result.plot_paths],
        "stages": stage_times,
        "cpu": cpu,
        "seconds": round(seconds, 3),
    }
    if check is not None:
        report["check"] = {
            "data": result.inputs.check_source,
            "samples": check.golden.samples,
            "verification": check.verification.to_dict(),
            "pytorch_original_vs_export_form": check.conversion,
            "other_sizes": check.other_sizes,
        }
    result.report = report
    return json.dumps(report, indent=2, default=str)
