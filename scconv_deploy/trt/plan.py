"""``BuildPlan``: everything an engine build will do, settled from the ONNX file and the options alone.

No TensorRT here: the plan reads the ONNX (inputs and their dynamic axes, precision, metadata),
turns ``--batch``/``--hw``/``--shapes`` into one optimisation profile, validates it against the
graph, lints the graph and drafts the sidecar. ``scconv-trt build --dry-run`` prints it; the
build (``trt.build``) executes it.

Precision comes from the ONNX, never from builder flags (TensorRT 11 has none): engines are
built strongly typed, so an FP16 ONNX gives an FP16 engine and Q/DQ nodes give INT8.

A plan can also describe a *verification twin* (``twin_of``; made by ``trt.twin.twin_plan``): the
same ONNX with every SRU's mask fed in, built with the same settings, that verification runs with
PyTorch's gate decisions.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from .._files import check_writable_dir
from .._version import __version__
from ..errors import EngineError
from ..gates import GATE_METADATA_KEY
from ..lint import LintReport, lint_onnx
from ..verify.forced import ForcedGraph
from .onnx_file import OnnxInput, export_shapes, file_sha256, load_onnx, read_inputs, read_metadata
from .onnx_precision import Precision, onnx_precision
from .profile import HW, ShapeRange, Triple, make_profile
from .sidecar import HARDWARE_LEVELS, SIDECAR_FORMAT, SIDECAR_VERSION, BuildInfo, dump_sidecar, sidecar_path

OPT_LEVELS = range(6)  # TensorRT's builder optimisation levels; 3 is its default


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A byte count: ``"4G"``, ``"512MiB"``, ``"1073741824"`` (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise EngineError(f"--workspace {text!r}: expected a size like 4G, 512M or a byte count")
    size = int(float(match[1]) * 1024 ** " kmgt".index(match[2].lower() or " "))
    if size < 1:
        raise EngineError(f"--workspace {text!r} must be positive")
    return size


@dataclass(frozen=True)
class TwinOf:
    """What a verification twin is built from and for: the verification graph of the deployment
    engine's ONNX, and that engine (its plan's hash once it is built)."""

    engine_path: Path
    graph: ForcedGraph
    engine_sha256: str | None = None

    def sidecar(self, twin_path: Path) -> dict[str, Any]:
        """The twin's sidecar keys: what it verifies, and the tensors that drive it."""
        return {
            "verification_twin": {
                "of": _relative(self.engine_path, twin_path.parent),
                "plan_sha256": self.engine_sha256,
                "graph": "the ONNX with every SRU mask fed in (force inputs) and computed (mask outputs)",
            },
            "force_inputs": list(self.graph.force_inputs),
            "mask_outputs": list(self.graph.mask_outputs),
        }


@dataclass
class BuildPlan:
    """A build, before it runs: ``to_dict()``/``str()`` show it, ``sidecar()`` drafts its sidecar."""

    onnx_path: Path
    engine_path: Path
    inputs: list[OnnxInput]
    outputs: list[str]
    profile: dict[str, ShapeRange]
    precision: Precision
    lint: LintReport
    metadata: dict[str, str]
    onnx_sha256: str
    gate_tensors: list[str]
    debug_gates: bool = False
    workspace: int | None = None
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # a key of HARDWARE_LEVELS
    builder_opt_level: int | None = None
    notes: list[str] = field(default_factory=list)
    twin_of: TwinOf | None = None  # set on the plan of a verification twin

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        engine_path: str | Path | None = None,
        *,
        batch: Triple | None = None,
        hw: HW | None = None,
        shapes: dict[str, ShapeRange] | None = None,
        workspace: int | None = None,
        timing_cache: str | Path | None = None,
        version_compatible: bool = False,
        hardware_compatibility: str = "none",
        builder_opt_level: int | None = None,
        debug_gates: bool = False,
        trt_major: int = 10,
        trt_version: str | None = None,
    ) -> BuildPlan:
        """Read ``onnx_path`` and settle every option; ``EngineError`` for anything that cannot work."""
        onnx_path = Path(onnx_path)
        model = load_onnx(onnx_path)
        inputs = read_inputs(model)
        metadata = read_metadata(model)
        profile, notes = make_profile(
            inputs, batch=batch, hw=hw, shapes=shapes, exported=export_shapes(inputs, metadata)
        )
        if builder_opt_level is not None and builder_opt_level not in OPT_LEVELS:
            raise EngineError(f"--builder-opt-level {builder_opt_level}: TensorRT takes 0 to 5")
        if workspace is not None and workspace < 1:
            raise EngineError("--workspace must be positive")
        if hardware_compatibility not in HARDWARE_LEVELS:
            raise EngineError(
                f"--hardware-compatibility {hardware_compatibility!r}: "
                f"use one of {', '.join(HARDWARE_LEVELS)}"
            )
        engine_path = Path(engine_path) if engine_path is not None else onnx_path.with_suffix(".plan")
        timing_cache = Path(timing_cache) if timing_cache is not None else None
        check_outputs(engine_path, timing_cache)
        gates = _gate_tensors(model, metadata, debug_gates)
        precision = onnx_precision(model)
        declared = metadata.get("precision")  # scconv-export --precision records it
        if declared and declared.upper() != precision.kind:
            notes.append(f"the metadata says precision {declared}, the graph reads as {precision.kind}")
        return cls(
            onnx_path=onnx_path,
            engine_path=engine_path,
            inputs=inputs,
            outputs=[o.name for o in model.graph.output],
            profile=profile,
            precision=precision,
            lint=lint_onnx(onnx_path, trt_major=trt_major, trt_version=trt_version),
            metadata=metadata,
            onnx_sha256=file_sha256(onnx_path),
            gate_tensors=gates,
            debug_gates=debug_gates,
            workspace=workspace,
            timing_cache=timing_cache,
            version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility,
            builder_opt_level=builder_opt_level,
            notes=notes,
        )

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.engine_path)

    @property
    def engine_outputs(self) -> list[str]:
        """The engine's outputs: the ONNX outputs, then the gate tensors with ``--debug-gates``."""
        return self.outputs + (self.gate_tensors if self.debug_gates else [])

    def sidecar(self, build: BuildInfo | None = None, verification: dict | None = None) -> dict[str, Any]:
        """The sidecar the build writes; without ``build``, the facts only a build knows are None."""
        twin = {"verification_twin": None} if self.twin_of is None else self.twin_of.sidecar(self.engine_path)
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "plan": {
                "file": self.engine_path.name,
                "sha256": build and build.plan_sha256,
                "bytes": build and build.plan_bytes,
            },
            "tensorrt": {
                "version": build and build.trt_version,
                "version_compatible": self.version_compatible,
                "strongly_typed": True,
            },
            "gpu": {
                "name": build and build.gpu_name,
                "compute_capability": build and build.compute_capability,
                "hardware_compatibility": self.hardware_compatibility,
            },
            "profiles": [{name: r.to_dict() for name, r in self.profile.items()}],
            "inputs": {i.name: {"dtype": i.dtype, "dims": list(i.dims)} for i in self.inputs},
            "outputs": self.engine_outputs,
            "gate_tensors": self.gate_tensors,
            "gate_outputs": self.gate_tensors if self.debug_gates else [],
            **twin,
            "precision": self.precision.to_dict(),
            "onnx": {
                "file": _relative(self.onnx_path, self.engine_path.parent),
                "sha256": self.onnx_sha256,
                "metadata": self.metadata,
            },
            "build": {
                "built_at": build and build.built_at,
                "seconds": build and round(build.seconds, 3),
                "workspace_bytes": self.workspace,
                "builder_optimization_level": self.builder_opt_level,
                "timing_cache": str(self.timing_cache) if self.timing_cache else None,
                "tf32": False,
            },
            "lint": {
                "trt_major": self.lint.trt_major,
                "ok": self.lint.ok,
                "errors": len(self.lint.errors),
                "warnings": len(self.lint.warnings),
                "summary": self.lint.summary(),
            },
            "toolkit": {"scconv_deploy": __version__, "polygraphy": _polygraphy_version()},
            "verification": verification,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx": str(self.onnx_path),
            "engine": str(self.engine_path),
            "sidecar_path": str(self.sidecar_path),
            "inputs": [{"name": i.name, "dims": list(i.dims), "dtype": i.dtype} for i in self.inputs],
            "outputs": self.engine_outputs,
            "profile": {name: r.to_dict() for name, r in self.profile.items()},
            "notes": self.notes,
            "precision": self.precision.to_dict(),
            "gate_tensors": self.gate_tensors,
            "debug_gates": self.debug_gates,
            "workspace_bytes": self.workspace,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
            "builder_optimization_level": self.builder_opt_level,
            "lint": self.lint.to_dict(),
            "sidecar": self.sidecar(),
        }

    def __str__(self) -> str:
        rows = [
            ("engine", f"{self.engine_path} (sidecar {self.sidecar_path.name})"),
            *(("input", str(i)) for i in self.inputs),
            *(("profile", f"{name}: {r}") for name, r in self.profile.items()),
            *(("", f"note: {n}") for n in self.notes),
            ("outputs", ", ".join(self.engine_outputs)),
            ("precision", f"{self.precision}, built strongly typed"),
            ("gates", self._gates_line()),
            ("workspace", f"{self.workspace / 2**20:g} MiB" if self.workspace else "TensorRT default"),
            ("timing cache", self._cache_line()),
            (
                "opt level",
                "TensorRT default (3)" if self.builder_opt_level is None else str(self.builder_opt_level),
            ),
            (
                "version-compat",
                "yes (later TensorRT releases run it too)" if self.version_compatible else "no",
            ),
            ("hardware", _HARDWARE_TEXT[self.hardware_compatibility]),
            ("lint", str(self.lint)),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [
            f"build plan for {self.onnx_path}"
            if self.twin_of is None
            else f"build plan for the verification twin of {self.twin_of.engine_path}: {self.onnx_path} "
            "with every SRU mask fed in"
        ]
        lines += [f"  {k:<{width}}  {v}".rstrip().replace("\n", "\n  " + " " * (width + 2)) for k, v in rows]
        lines.append(
            f"sidecar to write ({self.sidecar_path}; TensorRT, GPU and timings are filled in by the build):"
        )
        lines.append(dump_sidecar(self.sidecar()))
        return "\n".join(lines)

    def _gates_line(self) -> str:
        if self.twin_of is not None:
            n = len(self.twin_of.graph.force_inputs)
            return (
                f"{n} masks fed in (force:<block> inputs, PyTorch's decisions at verification), "
                f"the {n} it computes returned (mask:<block> outputs)"
            )
        if not self.gate_tensors:
            return "none recorded (not an scconv-export ONNX): verify compares outputs only"
        if self.debug_gates:
            return f"{len(self.gate_tensors)} gate tensors exposed as engine outputs (--debug-gates)"
        return f"{len(self.gate_tensors)} in the metadata, not exposed (--debug-gates counts flips exactly)"

    def _cache_line(self) -> str:
        if self.timing_cache is None:
            return "none (--timing-cache FILE reuses tactic timings across builds)"
        state = "exists, reused" if self.timing_cache.is_file() else "created"
        return f"{self.timing_cache} ({state}, updated after the build)"


_HARDWARE_TEXT = {
    "none": "this compute capability (TensorRT's default)",
    "same-cc": "GPUs of this compute capability (SAME_COMPUTE_CAPABILITY)",
    "ampere+": "any Ampere or newer GPU (AMPERE_PLUS: fewer tactics, possibly slower)",
}


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (absolute where no relative path exists): files that move together."""
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive
        return str(path.resolve())


def check_outputs(engine_path: Path, timing_cache: Path | None) -> None:
    """Refuse, before any build, an engine or timing cache that could not be written afterwards."""
    check_writable_dir(engine_path, EngineError)
    check_writable_dir(sidecar_path(engine_path), EngineError)
    if timing_cache is None:
        return
    if not timing_cache.parent.is_dir():
        raise EngineError(f"--timing-cache {timing_cache}: directory {timing_cache.parent} does not exist")
    check_writable_dir(timing_cache, EngineError)
    if timing_cache.exists() and not os.access(timing_cache, os.R_OK):
        raise EngineError(f"--timing-cache {timing_cache}: the file is not readable")


def _gate_tensors(model: onnx.ModelProto, metadata: dict[str, str], debug_gates: bool) -> list[str]:
    """Gate tensor names from the metadata; with ``debug_gates`` they must exist in the graph."""
    try:
        names = json.loads(metadata[GATE_METADATA_KEY])
    except (KeyError, ValueError):
        names = []
    if not debug_gates:
        return names
    if not names:
        raise EngineError(
            f"--debug-gates: the ONNX has no '{GATE_METADATA_KEY}' metadata (export it with scconv-export)"
        )
    produced = {o for node in model.graph.node for o in node.output}
    missing = [n for n in names if n not in produced]
    if missing:
        raise EngineError(
            f"--debug-gates: gate tensors {missing[:3]} are not in the graph (was it modified after export?)"
        )
    return names


def _polygraphy_version() -> str:
    import polygraphy

    return polygraphy.__version__
