"""An ONNX artefact (FP32, FP16 or INT8) run in ONNX Runtime against its golden data.

Two runs, as ``verify.compare`` reads them: the verification graph with PyTorch's decisions fed in
(``forced_graph``), and the artefact as deployed with its masks exposed. Both run at the graph
optimisation level that keeps the artefact's meaning: INT8 at "basic", where Q/DQ stay quantize →
dequantize → FP32 operator, the arithmetic TensorRT implements and the same on every CPU. For
INT8 the artefact is also run as ONNX Runtime serves it on this CPU (level "all", fused integer
kernels); how that differs is a note about this runtime on this CPU, never the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from .._cpu import cpu_description, has_vnni
from ..errors import VerificationError
from ..gates import MASK_PREFIX, expose_tensors, gate_tensor_names, mask_tensor_names, with_mask_outputs
from ..golden import Golden
from ..ort_cpu import cpu_session, run_batched
from .compare import Run, VerificationResult, compare, output_errors, top1_agreement
from .forced import forced_graph
from .tolerance import Tolerance

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


def artefact_precision(model: onnx.ModelProto) -> str:
    """The precision an exported artefact records in its metadata (``fp32`` if it records none)."""
    meta = {p.key: p.value for p in model.metadata_props}
    return meta.get("precision", "fp32")


def verification_level(precision: str) -> str:
    """The ONNX Runtime optimisation level a check of ``precision`` runs at (see the module docstring)."""
    return "basic" if precision.startswith("int8") else "all"


def check_golden_matches(model: onnx.ModelProto, golden: Golden) -> None:
    """Refuse golden data that belongs to another network (other blocks, inputs or checkpoint)."""
    masks = mask_tensor_names(model)
    want = [MASK_PREFIX + g.name for g in golden.gates]
    if masks != want:
        raise VerificationError(
            f"the golden data's SCConv blocks ({len(want)}) are not the model's ({len(masks)}): "
            f"pass the golden file written with this model"
        )
    golden.check_source({p.key: p.value for p in model.metadata_props}, "the model")
    (arg,) = model.graph.input
    dims = arg.type.tensor_type.shape.dim
    sample = golden.inputs.shape[1:]
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    if len(fixed) != len(sample) or any(f is not None and f != s for f, s in zip(fixed, sample, strict=True)):
        raise VerificationError(
            f"golden inputs of shape {list(golden.inputs.shape)} do not fit the model's input "
            f"{[d.dim_param or d.dim_value for d in dims]}"
        )


def _input_dtype(model: onnx.ModelProto) -> np.dtype:
    elem = model.graph.input[0].type.tensor_type.elem_type
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem or onnx.TensorProto.FLOAT))


def run_forced(
    model: onnx.ModelProto,
    golden: Golden,
    *,
    optimization: str = "all",
    expose: list[str] | None = None,
    gates: bool = False,
    progress: Progress | None = None,
) -> Run:
    """The artefact with PyTorch's decisions fed in: outputs, and the decisions it computes itself.

    ``expose`` names intermediate tensors to read in the same run (``Run.tensors``); ``gates`` reads
    each block's gate tensor too (``Run.gates``).
    """
    graph = forced_graph(model)
    gate_names = gate_tensor_names(model) if gates else []
    expose = list(expose or [])
    reads = [*expose, *gate_names]
    runnable = expose_tensors(graph.model, reads) if reads else graph.model
    session = cpu_session(runnable, optimization=optimization, what="the verification graph")

    def masks(rows: slice) -> dict[str, np.ndarray]:
        return {
            name: golden.masks(b, rows, dtype)
            for b, (name, dtype) in enumerate(zip(graph.force_inputs, graph.force_dtypes, strict=True))
        }

    names = [*graph.output_names, *graph.mask_outputs, *reads]
    results = run_batched(
        session,
        golden.inputs.astype(_input_dtype(model), copy=False),
        graph.input_name,
        extra=masks,
        outputs=names,
        progress=progress,
        what="the verification graph",
    )
    n, m = len(graph.output_names), len(graph.mask_outputs)
    read = results[n + m :]
    tensors = dict(zip(expose, read[: len(expose)], strict=True))
    gate_values = read[len(expose) :] if gates else None
    return Run([r.astype(np.float32) for r in results[:n]], results[n : n + m], tensors, gate_values)


def run_deployed(
    model: onnx.ModelProto,
    golden: Golden,
    *,
    optimization: str = "all",
    masks: bool = True,
    progress: Progress | None = None,
) -> Run:
    """The artefact with its own decisions (masks exposed unless ``masks=False``)."""
    exposed = with_mask_outputs(model) if masks else model
    session = cpu_session(exposed, optimization=optimization, what="the artefact")
    n = len(model.graph.output)
    results = run_batched(
        session,
        golden.inputs.astype(_input_dtype(model), copy=False),
        model.graph.input[0].name,
        progress=progress,
        what="the artefact",
    )
    return Run([r.astype(np.float32) for r in results[:n]], results[n:] if masks else None)


@dataclass(frozen=True)
class KernelNote:
    """The INT8 artefact as ONNX Runtime's fused integer kernels compute it on this CPU."""

    cpu: str
    vnni: bool  # int8 dot-product instructions: without them, saturation is the known cause
    max_scaled_error: float  # largest error over channel scale, against PyTorch
    top1_agreement: float | None
    qdq_top1_agreement: float | None  # the same, with Q/DQ semantics (the verdict's run)
    degraded: bool

    def text(self, precision: str) -> str:
        top1 = (
            f"top-1 agreement {self.top1_agreement:.2%} (Q/DQ semantics: {self.qdq_top1_agreement:.2%})"
            if self.top1_agreement is not None and self.qdq_top1_agreement is not None
            else f"largest error {self.max_scaled_error:.2g} of the output scale"
        )
        head = f"ONNX Runtime's own int8 kernels on this CPU ({self.cpu}): {top1}"
        if not self.degraded:
            return head
        if precision != "int8":
            advice = "the CPU variant still loses accuracy here: run it with graph optimisation 'basic'"
        elif not self.vnni:
            advice = (
                "this CPU lacks int8 dot-product instructions (VNNI) and its u8s8 kernels saturate; "
                "for ONNX Runtime on such CPUs export with --precision int8-cpu (7-bit weights)"
            )
        else:
            advice = "for ONNX Runtime on this CPU try --precision int8-cpu (7-bit weights)"
        return f"{head} — {advice}"


def int8_kernel_note(model: onnx.ModelProto, golden: Golden, reference: Run, precision: str) -> KernelNote:
    """``model`` at optimisation "all" on this CPU, against its Q/DQ-semantics run ``reference``."""
    fused = run_deployed(model, golden, optimization="all", masks=False)
    error = max(o.max_scaled for o in output_errors(golden, fused.outputs))
    ref_error = max(o.max_scaled for o in output_errors(golden, reference.outputs))
    top1, ref_top1 = top1_agreement(golden, fused.outputs), top1_agreement(golden, reference.outputs)
    worse_top1 = top1 is not None and ref_top1 is not None and top1 < ref_top1 - 0.01
    degraded = worse_top1 or error > 2 * ref_error + 0.05
    return KernelNote(cpu_description(), has_vnni(), error, top1, ref_top1, bool(degraded))


def verify_onnx(
    model: onnx.ModelProto,
    golden: Golden,
    *,
    precision: str | None = None,
    tolerance: Tolerance | None = None,
    expose: list[str] | None = None,
    progress: Progress | None = None,
) -> VerificationResult:
    """Verify an exported ONNX artefact against ``golden`` in ONNX Runtime (see the module docstring).

    ``precision`` defaults to the artefact's metadata; ``tolerance`` to that precision's.
    ``expose`` names intermediate tensors read in the decision-forced run
    (``result.runs["forced"].tensors``). ``progress`` gets the number of samples done in each run.
    Raises ``VerificationError`` when the golden data does not belong to the model,
    ``ort_cpu.OrtFailure`` when ONNX Runtime cannot run it; a mismatch is a failed result, not an error.
    """
    precision = precision or artefact_precision(model)
    check_golden_matches(model, golden)
    level = verification_level(precision)
    gates = golden.gate_values is not None
    forced = run_forced(model, golden, optimization=level, expose=expose, gates=gates, progress=progress)
    free = run_deployed(model, golden, optimization=level, progress=progress)
    result = compare(golden, forced, free, precision=precision, tolerance=tolerance)
    if precision.startswith("int8"):
        note = int8_kernel_note(model, golden, free, precision)
        result.notes.append(note.text(precision))
        logger.info("int8 kernels on this CPU: %s", note)
    return result
