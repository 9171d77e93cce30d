"""Checking a reduced-precision artefact against the FP32 export and its golden data.

Three views, because ONNX Runtime's CPU provider computes many FP16 operators in FP32 and so
understates FP16 error:

* **end to end** — the artefact in ONNX Runtime against golden data, decision-aware
  (``verify.compare``): gate decisions flipped (count, fraction), output error where decisions
  agree, top-1 agreement for classifiers;
* **block-local** — each SRU's gate computed by the artefact from that block's FP32 input (the
  subgraph from the block input to the gate tensor, cut out with ``onnx.utils.Extractor``): flips
  of gates whose FP32 margin |r - t| exceeds ``margin`` are the policy's failures, closer ones
  are counted;
* **emulation** (FP16) — the same checks on ``emulate_fp16``, which rounds every FP16 tensor
  between operators, and on naive whole-graph FP16: the counterfactual the policy prevents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx.utils import Extractor

from ..gates import expose_tensors, with_gate_outputs
from ..golden import Golden
from ..ort_cpu import cpu_session
from ..verify import VerificationResult, compare
from .fp16 import emulate_fp16, to_naive_fp16
from .gate_path import gate_path

TOLERANCES = {"fp16": (1e-2, 1e-2), "int8": (1e-1, 1e-1)}  # (rtol, atol) on agreeing samples
MIN_TOP1 = {"fp16": 0.999, "int8": 0.99}


@dataclass(frozen=True)
class BlockLocal:
    name: str
    gates: int
    flipped: int
    flipped_above_margin: int


@dataclass
class View:
    """One artefact (or emulation) seen end to end and block-locally."""

    label: str
    gates: int
    flipped: int
    top1_agreement: float | None
    block_local: list[BlockLocal]
    verification: VerificationResult | None = None

    @property
    def flip_fraction(self) -> float:
        return self.flipped / self.gates if self.gates else 0.0

    @property
    def flipped_above_margin(self) -> int:
        return sum(b.flipped_above_margin for b in self.block_local)


@dataclass
class PrecisionCheck:
    precision: str
    margin: float
    artefact: View
    emulation: View | None = None
    naive: list[View] = field(default_factory=list)
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def view(v: View | None) -> dict | None:
            if v is None:
                return None
            d = asdict(v)
            d["verification"] = v.verification.to_dict() if v.verification is not None else None
            d.update(flip_fraction=v.flip_fraction, flipped_above_margin=v.flipped_above_margin)
            return d

        return {
            "precision": self.precision,
            "margin": self.margin,
            "passed": self.passed,
            "reasons": self.reasons,
            "artefact": view(self.artefact),
            "emulation": view(self.emulation),
            "naive_fp16": [view(v) for v in self.naive],
        }

    def __str__(self) -> str:
        lines = [f"{self.precision.upper()} check {'PASSED' if self.passed else 'FAILED'}"]
        for v in [self.artefact, self.emulation, *self.naive]:
            if v is None:
                continue
            top1 = f", top-1 agreement {v.top1_agreement:.2%}" if v.top1_agreement is not None else ""
            local = sum(b.flipped for b in v.block_local)
            lines.append(
                f"  {v.label:24s} gate flips {v.flipped}/{v.gates} ({v.flip_fraction:.3%}){top1}; "
                f"block-local: {local} flips, {v.flipped_above_margin} with margin > {self.margin:g}"
            )
        lines += [f"  ! {r}" for r in self.reasons] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    return cpu_session(model).run(outputs, feed)


def _fp32_blocks(fp32: onnx.ModelProto, golden: Golden) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each SRU's FP32 input and FP32 gate values (the FP32 export run in ONNX Runtime)."""
    path = gate_path(fp32)
    model = expose_tensors(with_gate_outputs(fp32), list(path.block_inputs))
    names = [*path.gate_tensors, *path.block_inputs]
    values = _run(model, {model.graph.input[0].name: golden.inputs}, names)
    n = len(path.gate_tensors)
    return values[n:], values[:n]


def _block_local(
    artefact: onnx.ModelProto,
    golden: Golden,
    inputs: list[np.ndarray],
    fp32_gates: list[np.ndarray],
    margin: float,
    stored_fp16: bool,
) -> list[BlockLocal]:
    path = gate_path(artefact)
    inferred = onnx.shape_inference.infer_shapes(artefact)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    extractor = Extractor(inferred)
    blocks = []
    for spec, x_name, r_name, x, r32 in zip(
        golden.gates, path.block_inputs, path.gate_tensors, inputs, fp32_gates, strict=True
    ):
        sub = extractor.extract_model([x_name], [r_name])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types.get(x_name, onnx.TensorProto.FLOAT))
        if stored_fp16:  # an emulation holds the block input rounded to FP16, in an FP32 tensor
            x = x.astype(np.float16)
        (r,) = _run(sub, {x_name: x.astype(dtype)}, [r_name])
        flipped = spec.decide(r.astype(np.float32)) != spec.decide(r32)
        clear = np.abs(r32 - np.float32(spec.threshold)) > margin
        blocks.append(BlockLocal(spec.name, int(r32.size), int(flipped.sum()), int((flipped & clear).sum())))
    return blocks


def _view(
    label: str,
    model: onnx.ModelProto,
    golden: Golden,
    block_inputs: list[np.ndarray],
    fp32_gates: list[np.ndarray],
    margin: float,
    tolerances: tuple[float, float],
    stored_fp16: bool = False,
) -> View:
    exposed = with_gate_outputs(model)
    y, *gates = _run(
        exposed, {exposed.graph.input[0].name: golden.inputs}, [o.name for o in exposed.graph.output]
    )
    n_out = len(golden.outputs)
    outs = [y, *gates[: n_out - 1]]
    gates = [g.astype(np.float32) for g in gates[n_out - 1 :]]
    result = compare(
        golden, [o.astype(np.float32) for o in outs], gates, rtol=tolerances[0], atol=tolerances[1]
    )
    ref = golden.outputs[0]
    top1 = float((outs[0].argmax(1) == ref.argmax(1)).mean()) if ref.ndim == 2 and ref.shape[1] > 1 else None
    local = _block_local(model, golden, block_inputs, fp32_gates, margin, stored_fp16)
    return View(label, result.gates_compared, result.gates_flipped, top1, local, result)


def check_precision(
    fp32: onnx.ModelProto,
    artefact: onnx.ModelProto,
    golden: Golden,
    precision: str,
    *,
    margin: float = 1e-3,
    min_top1: float | None = None,
    counterfactual: bool = True,
) -> PrecisionCheck:
    """Check ``artefact`` (``precision`` "fp16" or "int8") against the FP32 export's golden data.

    Fails when a block-locally computed gate with FP32 margin above ``margin`` flips (artefact or
    emulation), or when the artefact's top-1 agreement with FP32 falls below ``min_top1`` (default
    99.9 % for FP16, 99 % for INT8); the emulation's top-1 agreement is reported as a note.
    """
    tolerances = TOLERANCES[precision]
    block_inputs, fp32_gates = _fp32_blocks(fp32, golden)
    art = _view(f"{precision} artefact (ORT)", artefact, golden, block_inputs, fp32_gates, margin, tolerances)
    check = PrecisionCheck(precision, margin, art)
    if precision == "fp16":
        common = (golden, block_inputs, fp32_gates, margin, tolerances)
        check.emulation = _view("fp16 emulation", emulate_fp16(fp32), *common, stored_fp16=True)
        if counterfactual:
            check.naive = [
                _view("naive fp16 (ORT)", to_naive_fp16(fp32), *common),
                _view(
                    "naive fp16 emulation",
                    emulate_fp16(fp32, keep_gate_path=False),
                    *common,
                    stored_fp16=True,
                ),
            ]
    threshold = MIN_TOP1[precision] if min_top1 is None else min_top1
    for view in [art, check.emulation]:
        if view is not None and view.flipped_above_margin:
            count = view.flipped_above_margin
            check.reasons.append(
                f"{view.label}: {count} block-local gate flip(s) with FP32 margin > {margin:g}"
            )
    if art.top1_agreement is not None and art.top1_agreement < threshold:
        check.reasons.append(f"{art.label}: top-1 agreement {art.top1_agreement:.2%} below {threshold:.1%}")
    emu = check.emulation
    if emu is not None and emu.top1_agreement is not None and emu.top1_agreement < threshold:
        # Rounding every tensor (logits included) can reorder near-equal classes: worth knowing,
        # not a gate failure — the block-local gate criterion above is the policy's.
        check.notes.append(f"{emu.label}: top-1 agreement {emu.top1_agreement:.2%} (below {threshold:.1%})")
    check.passed = not check.reasons
    return check
