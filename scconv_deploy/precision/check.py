"""Checking a reduced-precision artefact against the FP32 export and its golden data.

* **the artefact** (``verify.verify_onnx``): with PyTorch's decisions fed in, every sample's
  outputs within the precision's tolerance and no gate flipped beyond what precision explains;
  as deployed, flips counted and top-1 agreement for classifiers; for INT8, Q/DQ semantics, with
  ONNX Runtime's own integer kernels on this CPU as a note;
* **block-local** — each SRU's gate computed by the artefact from that block's FP32 input (the
  subgraph from the block input to the mask, cut out with ``onnx.utils.Extractor``, fed by the
  FP32 export run with PyTorch's decisions): the gate path is FP32 in every artefact, so only ties
  may flip here;
* **FP16 emulation** (``emulate_fp16``: every FP16 tensor rounded between operators) held to the
  same criteria — ONNX Runtime's CPU provider computes many FP16 operators in FP32 and so
  understates FP16 error — and the naive whole-graph FP16 counterfactual, reported;
* **detections** — for a detector (``verify.detection``), the artefact's detections as deployed
  against PyTorch's, after the predictor's post-processing: recall, precision, score error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx.utils import Extractor

from ..gates import mask_tensor_names
from ..golden import Golden
from ..ort_cpu import cpu_session, run_batched
from ..stages import Stages
from ..verify import Run, VerificationResult, compare, run_deployed, run_forced, verify_onnx
from ..verify.detection import DetectionAgreement, detector_agreement
from ..verify.tolerance import Tolerance
from .fp16 import emulate_fp16, to_naive_fp16
from .gate_path import gate_path


@dataclass(frozen=True)
class BlockLocal:
    name: str
    gates: int
    flipped: int
    beyond_ties: int  # flips of gates at least the tie guard from their threshold: the gate path is wrong


@dataclass
class PrecisionCheck:
    precision: str
    artefact: VerificationResult
    block_local: list[BlockLocal]
    emulation: VerificationResult | None = None
    emulation_block_local: list[BlockLocal] = field(default_factory=list)
    naive: dict[str, VerificationResult] = field(default_factory=dict)  # counterfactual, reported
    detection: DetectionAgreement | None = None  # a detector's detections as deployed, against PyTorch's
    emulation_detection: DetectionAgreement | None = None
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "reasons": self.reasons,
            "artefact": self.artefact.to_dict(),
            "block_local": [asdict(b) for b in self.block_local],
            "emulation": self.emulation.to_dict() if self.emulation is not None else None,
            "emulation_block_local": [asdict(b) for b in self.emulation_block_local],
            "naive": {k: _flip_summary(v) for k, v in self.naive.items()},
            "detection": self.detection.to_dict() if self.detection is not None else None,
            "emulation_detection": (
                self.emulation_detection.to_dict() if self.emulation_detection is not None else None
            ),
        }

    def __str__(self) -> str:
        lines = [f"{self.precision.upper()} check {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  {line}" for line in str(self.artefact).splitlines()]
        lines.append(f"  block-local (gate path on FP32 inputs): {_local_text(self.block_local)}")
        if self.detection is not None:
            lines.append(f"  as deployed, {self.detection.line()}")
        if self.emulation is not None:
            head, *rest = str(self.emulation).splitlines()
            lines.append(f"  FP16 emulation: {head}")
            lines += [f"    {line}" for line in rest]
            lines.append(f"    block-local: {_local_text(self.emulation_block_local)}")
            if self.emulation_detection is not None:
                lines.append(f"    {self.emulation_detection.line()}")
        for label, result in self.naive.items():
            s = _flip_summary(result)
            top1 = f", top-1 agreement {s['top1_agreement']:.2%}" if s["top1_agreement"] is not None else ""
            lines.append(
                f"  counterfactual {label}: {s['flipped']}/{s['gates']} gate decisions flipped "
                f"({s['flip_fraction']:.3%}){top1}"
            )
        lines += [f"  ! {r}" for r in self.reasons]
        return "\n".join(lines)


def _flip_summary(result: VerificationResult) -> dict:
    view = result.deployed
    gates = view.gates if view is not None else 0
    flipped = view.flipped if view is not None else 0
    return {
        "gates": gates,
        "flipped": flipped,
        "flip_fraction": flipped / gates if gates else 0.0,
        "top1_agreement": view.top1_agreement if view is not None else None,
    }


def _local_text(blocks: list[BlockLocal]) -> str:
    gates = sum(b.gates for b in blocks)
    flipped = sum(b.flipped for b in blocks)
    beyond = sum(b.beyond_ties for b in blocks)
    return f"{flipped}/{gates} flipped, {beyond} beyond the tie guard"


def block_input_names(fp32: onnx.ModelProto) -> list[str]:
    """The SRU inputs of the FP32 export that a forced run must expose for ``fp32_block_inputs`` (a block
    reading the graph input itself needs none)."""
    return [n for n in gate_path(fp32).block_inputs if n != fp32.graph.input[0].name]


def fp32_block_inputs(fp32: onnx.ModelProto, golden: Golden, forced: Run | None = None) -> list[np.ndarray]:
    """Each SRU's input in the FP32 export, run with PyTorch's decisions (so it is PyTorch's input).

    ``forced`` is such a run already made, exposing ``block_input_names(fp32)`` (the export's FP32
    check); without it the FP32 graph is run here."""
    if forced is None:
        forced = run_forced(fp32, golden, expose=block_input_names(fp32))
    first = fp32.graph.input[0].name
    return [golden.inputs if n == first else forced.tensors[n] for n in gate_path(fp32).block_inputs]


def block_local(
    artefact: onnx.ModelProto, golden: Golden, inputs: list[np.ndarray], stored_fp16: bool = False
) -> list[BlockLocal]:
    """Each SRU's decisions computed by ``artefact`` from the FP32 block inputs (see the module docstring)."""
    path = gate_path(artefact)
    masks = mask_tensor_names(artefact)
    inferred = onnx.shape_inference.infer_shapes(artefact)
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)
    }
    extractor = Extractor(inferred)
    blocks = []
    for b, (spec, x_name, mask_name, x) in enumerate(
        zip(golden.gates, path.block_inputs, masks, inputs, strict=True)
    ):
        sub = extractor.extract_model([x_name], [mask_name])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types.get(x_name, onnx.TensorProto.FLOAT))
        if stored_fp16:  # an emulation holds the block input rounded to FP16, in an FP32 tensor
            x = x.astype(np.float16)
        what = f"the gate path of {spec.name}"
        session = cpu_session(sub, what=what)
        (mask,) = run_batched(session, x.astype(dtype), x_name, outputs=[mask_name], what=what)
        flipped = spec.decisions(mask) != golden.decisions[b]
        beyond = flipped & (golden.classes[b] > 0)  # not a tie
        blocks.append(BlockLocal(spec.name, int(flipped.size), int(flipped.sum()), int(beyond.sum())))
    return blocks


def check_precision(
    fp32: onnx.ModelProto,
    artefact: onnx.ModelProto,
    golden: Golden,
    precision: str,
    *,
    tolerance: Tolerance | None = None,
    counterfactual: bool = True,
    fp32_run: Run | None = None,
    stages: Stages | None = None,
) -> PrecisionCheck:
    """Check ``artefact`` ("fp16", "int8" or "int8-cpu") against the FP32 export's golden data.

    Fails when the artefact (or, for FP16, its emulation) fails verification, or when a gate path
    fed FP32 inputs flips a gate that is not a tie. ``fp32_run`` is the FP32 export's decision-forced
    run, where one was made exposing ``block_input_names(fp32)`` (else the gate path's FP32 inputs
    are computed here). ``stages`` (optional) names and times each part and reports its progress.
    """
    stages = stages or Stages()
    runs = 2 * golden.samples  # decisions forced, then as deployed
    metadata = {p.key: p.value for p in artefact.metadata_props}
    with stages.stage(f"{precision} check", total=runs) as advance:
        result = verify_onnx(artefact, golden, precision=precision, tolerance=tolerance, progress=advance)
        detection = _detections(golden, result, metadata)
    with stages.stage("gate path on FP32 inputs"):
        inputs = fp32_block_inputs(fp32, golden, fp32_run)
        check = PrecisionCheck(precision, result, block_local(artefact, golden, inputs), detection=detection)
    if precision == "fp16":
        with stages.stage("fp16 emulation", total=runs) as advance:
            emulated = emulate_fp16(fp32)
            check.emulation = verify_onnx(
                emulated, golden, precision="fp16", tolerance=tolerance, progress=advance
            )
            check.emulation_block_local = block_local(emulated, golden, inputs, stored_fp16=True)
            check.emulation_detection = _detections(golden, check.emulation, metadata)
        if counterfactual:
            with stages.stage("naive fp16 counterfactual", total=runs) as advance:
                for label, model in (
                    ("naive FP16 (ORT)", to_naive_fp16(fp32)),
                    ("naive FP16 emulation", emulate_fp16(fp32, keep_gate_path=False)),
                ):
                    run = run_deployed(model, golden, progress=advance)
                    check.naive[label] = compare(
                        golden, deployed=Run(run.outputs, run.masks), precision="fp16"
                    )
    _judge(check)
    return check


def _detections(golden: Golden, result: VerificationResult, metadata: dict) -> DetectionAgreement | None:
    deployed = result.runs.get("deployed")
    return detector_agreement(golden, deployed, metadata) if deployed is not None else None


def _judge(check: PrecisionCheck) -> None:
    reasons = check.reasons
    reasons += [f"artefact: {r}" for r in check.artefact.reasons]
    if check.emulation is not None:
        reasons += [f"FP16 emulation: {r}" for r in check.emulation.reasons]
    for label, blocks in (("artefact", check.block_local), ("FP16 emulation", check.emulation_block_local)):
        beyond = sum(b.beyond_ties for b in blocks)
        if beyond:
            worst = max(blocks, key=lambda b: b.beyond_ties)
            reasons.append(
                f"{label}: the gate path fed FP32 inputs flips {beyond} decision(s) that are not ties "
                f"(first in {worst.name}): the gate path is not computed in FP32"
            )
    check.passed = not reasons
