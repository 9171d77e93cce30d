"""Decision-aware comparison of an artefact's outputs with golden PyTorch data.

SCConv's gates make plain atol/rtol comparison unsound: a gate value within rounding of its
threshold (a *tie*) may be decided differently by a correct runtime, which moves that pixel by
about ``|x|`` and, through the CRU's softmax, the whole sample a little. Setting such samples
aside is no answer either: on real networks every sample can hold a tie, and a check that
compares nothing passes anything. So an artefact is seen in two runs:

* **forced** — run with PyTorch's decisions fed in (``verify.forced``). Every sample's outputs
  must then match PyTorch within the precision's tolerance: this is the verdict on the
  arithmetic, over all samples. The artefact still computes its own decision at every gate;
  where it differs from PyTorch's, the golden margin ``|r - t|`` of that gate classifies the flip:
  a tie (FP32 rounding), explained by the precision (below ``Tolerance.flip_margin``), or real —
  the arithmetic before that gate is wrong — which fails.
* **as deployed** — run with its own decisions. Reported for what it is: how many samples took a
  tie the other way, and how far that moved their outputs. Samples whose decisions all agree
  must match like the forced run; a sample whose first differing block flips a clearly decided
  gate fails. Without mask outputs (a plain engine) the samples with no gate near its
  threshold are the ones held to the tolerance.

A check that compared no sample never passes. The functions here take arrays and return result
objects; running artefacts and exiting are the callers' business.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..golden import Golden, sample_gate_values
from .tolerance import Tolerance, channel_scale, tolerance_for

#: Top-1 agreement with PyTorch a reduced-precision classifier must keep (run as deployed).
MIN_TOP1 = {"fp16": 0.999, "int8": 0.99}


@dataclass(frozen=True)
class Run:
    """What an artefact produced on the golden inputs: its outputs and, where read, its gate masks."""

    outputs: list[np.ndarray]
    masks: list[np.ndarray] | None = None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # other tensors read in the same run
    gates: list[np.ndarray] | None = None  # each block's gate tensor, where read


@dataclass(frozen=True)
class GateValueError:
    """One block's gate values against PyTorch's, with decisions forced."""

    max_abs: float
    mean_abs: float  # held to ``Tolerance.gate_atol``


@dataclass(frozen=True)
class OutputError:
    """Error of one output over a set of samples."""

    name: str
    samples: int
    max_abs: float
    mean_abs: float
    max_scaled: float  # largest |a - g| over the channel scale
    worst_sample: int  # index into the golden samples
    failed_elements: int
    passed: bool

    def line(self, held: bool = True) -> str:
        """One line of text; ``held=False`` for errors that are reported, not held to the tolerance."""
        worst = f"sample {self.worst_sample}" if self.samples else "-"
        failed = (
            f", {self.failed_elements} element(s) beyond tolerance" if held and self.failed_elements else ""
        )
        return (
            f"{self.name}: max abs {self.max_abs:.3g} ({self.max_scaled:.2g} of its scale, {worst}), "
            f"mean abs {self.mean_abs:.3g}{failed}"
        )


@dataclass(frozen=True)
class BlockFlips:
    """One SRU's gate decisions against PyTorch's."""

    name: str
    gates: int  # decisions compared (all samples)
    flipped: int
    by_class: list[int]  # flips per golden margin class (0: ties, then edges of Golden.edges)
    real: int  # flips that fail: beyond the flip margin (forced), or starting a sample's divergence
    samples_with_real_flips: list[int] = field(default_factory=list)


@dataclass
class View:
    """One run of the artefact, compared."""

    forced: bool
    compared: list[int]  # samples held to the tolerance
    outputs: list[OutputError]  # over the compared samples
    flips: list[BlockFlips] | None  # None when the run exposed no masks
    diverged: list[int] = field(default_factory=list)  # as deployed: samples that took another decision
    diverged_outputs: list[OutputError] = field(default_factory=list)  # reported, not held
    top1_agreement: float | None = None
    gate_errors: list[GateValueError] | None = None  # per block, where gate values were compared

    @property
    def gates(self) -> int:
        return sum(b.gates for b in self.flips or [])

    @property
    def flipped(self) -> int:
        return sum(b.flipped for b in self.flips or [])

    @property
    def real_flips(self) -> int:
        return sum(b.real for b in self.flips or [])

    def flip_classes(self) -> list[int]:
        if not self.flips:
            return []
        return [int(sum(col)) for col in zip(*(b.by_class for b in self.flips), strict=True)]


@dataclass
class VerificationResult:
    samples: int
    precision: str
    tolerance: Tolerance
    edges: tuple[float, ...]  # golden margin class boundaries (edges[0]: the tie guard)
    forced: View | None
    deployed: View | None
    passed: bool = False
    reasons: list[str] = field(default_factory=list)  # why it failed
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures
    runs: dict[str, Run] = field(default_factory=dict, repr=False)  # the arrays compared (not serialised)

    @property
    def compared(self) -> int:
        """Samples whose outputs were held to the tolerance (all of them when decisions were forced)."""
        views = [v for v in (self.forced, self.deployed) if v is not None]
        return max((len(v.compared) for v in views), default=0)

    @property
    def gates_compared(self) -> int:
        view = self.forced or self.deployed
        return view.gates if view is not None else 0

    @property
    def real_flips(self) -> int:
        return sum(v.real_flips for v in (self.forced, self.deployed) if v is not None)

    def to_dict(self) -> dict:
        def view(v: View | None) -> dict | None:
            if v is None:
                return None
            d = asdict(v)
            d.update(gates=v.gates, flipped=v.flipped, real_flips=v.real_flips)
            return d

        return {
            "passed": self.passed,
            "samples": self.samples,
            "compared": self.compared,
            "real_flips": self.real_flips,
            "precision": self.precision,
            "tolerance": self.tolerance.to_dict(),
            "margin_edges": list(self.edges),
            "forced": view(self.forced),
            "deployed": view(self.deployed),
            "reasons": self.reasons,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        how = "with PyTorch's gate decisions fed in" if self.forced is not None else "as deployed"
        lines = [
            f"verification {verdict} ({self.precision}; {self.tolerance}): "
            f"{self.compared}/{self.samples} samples compared {how}"
        ]
        if self.forced is not None:
            lines += [f"  {o.line()}" for o in self.forced.outputs]
            if self.forced.flips is not None:
                lines.append(f"  gate decisions the artefact computes: {_flip_text(self.forced, self.edges)}")
            if errors := self.forced.gate_errors:
                worst = max(e.max_abs for e in errors)
                mean = max(e.mean_abs for e in errors)
                lines.append(f"  gate values |r - r_PyTorch|: mean {mean:.2g} (worst block), max {worst:.2g}")
        d = self.deployed
        if d is not None:
            if d.flips is not None:
                lines.append(
                    f"  as deployed (own decisions): {_flip_text(d, self.edges)}; "
                    f"{len(d.diverged)}/{self.samples} samples took another decision"
                )
            else:
                lines.append(f"  as deployed: {len(d.compared)} samples with no gate near its threshold")
            if self.forced is None:
                lines += [f"  {o.line()}" for o in d.outputs]
            lines += [f"    on samples that diverged: {o.line(held=False)}" for o in d.diverged_outputs]
            if d.top1_agreement is not None:
                lines.append(f"  top-1 agreement with PyTorch as deployed: {d.top1_agreement:.2%}")
        lines += [f"  ! {r}" for r in self.reasons] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _flip_text(view: View, edges: tuple[float, ...]) -> str:
    agree = view.gates - view.flipped
    if not view.flipped:
        return f"{agree}/{view.gates} agree"
    classes = view.flip_classes()
    labels = [f"|r-t| < {edges[0]:g} (ties)"] + [
        f">= {lo:g}" if i == len(edges) - 1 else f"[{lo:g}, {edges[i + 1]:g})" for i, lo in enumerate(edges)
    ]
    parts = ", ".join(f"{n} at {label}" for n, label in zip(classes, labels, strict=True) if n)
    return f"{agree}/{view.gates} agree; {view.flipped} flipped: {parts}"


def output_errors(
    golden: Golden,
    outputs: list[np.ndarray],
    rows: np.ndarray | None = None,
    tolerance: Tolerance | None = None,
) -> list[OutputError]:
    """Each output's error against golden over ``rows`` (a boolean mask of samples; default: all),
    judged with ``tolerance`` (default: FP32's)."""
    rows = np.ones(golden.samples, dtype=bool) if rows is None else rows
    tolerance = tolerance or tolerance_for("fp32")
    errors = []
    for name, g, a in zip(golden.output_names, golden.outputs, outputs, strict=True):
        idx = np.flatnonzero(rows)
        if not len(idx):
            errors.append(OutputError(name, 0, 0.0, 0.0, 0.0, -1, 0, True))
            continue
        scale = channel_scale(g)  # over every golden sample: the same yardstick for every view
        g64, a64 = g[idx].astype(np.float64), a[idx].astype(np.float64)
        scale = np.broadcast_to(scale, g.shape)[idx] if scale.ndim else scale
        diff = np.abs(a64 - g64)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN never passes
        bad = diff > tolerance.allowed(g64, scale)
        per_sample = diff.reshape(len(idx), -1).max(axis=1)
        scaled = diff / np.maximum(scale, np.finfo(np.float64).tiny)
        errors.append(
            OutputError(
                name,
                len(idx),
                float(diff.max()),
                float(diff.mean()),
                float(scaled.max()),
                int(idx[int(np.argmax(per_sample))]),
                int(bad.sum()),
                not bool(bad.any()),
            )
        )
    return errors


def _flipped(golden: Golden, masks: list[np.ndarray]) -> list[np.ndarray]:
    return [
        spec.decisions(m) != want for spec, m, want in zip(golden.gates, masks, golden.decisions, strict=True)
    ]


def _real_class(golden: Golden, tolerance: Tolerance) -> int:
    """The lowest margin class whose flips are real under ``tolerance``."""
    if tolerance.flip_margin is None:
        return 1  # anything but a tie
    edges = golden.edges
    return next((k + 1 for k, e in enumerate(edges) if e >= tolerance.flip_margin), len(edges) + 1)


def _by_class(golden: Golden, block: int, flipped: np.ndarray) -> list[int]:
    counts = np.bincount(golden.classes[block][flipped], minlength=len(golden.edges) + 1)
    return [int(c) for c in counts]


def _block_flips(golden: Golden, b: int, flipped: np.ndarray, real: int, samples: np.ndarray) -> BlockFlips:
    """Block ``b``'s flips: ``real`` of them beyond their class, first in ``samples`` (up to 20 kept)."""
    return BlockFlips(
        golden.gates[b].name,
        int(flipped.size),
        int(flipped.sum()),
        _by_class(golden, b, flipped),
        real,
        samples.tolist()[:20],
    )


def _forced_flips(golden: Golden, masks: list[np.ndarray], real_class: int) -> list[BlockFlips]:
    """Decisions the artefact computes with PyTorch's fed in: each block sees PyTorch's input."""
    blocks = []
    for b, f in enumerate(_flipped(golden, masks)):
        real = f & (golden.classes[b] >= real_class)
        samples = np.flatnonzero(real.reshape(len(real), -1).any(axis=1))
        blocks.append(_block_flips(golden, b, f, int(real.sum()), samples))
    return blocks


def _deployed_flips(
    golden: Golden, masks: list[np.ndarray], real_class: int
) -> tuple[list[BlockFlips], np.ndarray]:
    """End-to-end flips (real ones counted where a sample's divergence began) and the samples that diverged.

    A flip changes that block's output, so every later block of the sample may legitimately
    decide differently: only the first block that flips in a sample says whether the sample's
    divergence began at a gate precision can explain (blocks are in execution order).
    """
    n = golden.samples
    flipped = _flipped(golden, masks)
    if not flipped:  # a network without SCConv blocks decides nothing
        return [], np.zeros(n, dtype=bool)
    real = [f & (c >= real_class) for f, c in zip(flipped, golden.classes, strict=True)]
    any_flip = np.stack([f.reshape(n, -1).any(axis=1) for f in flipped], axis=1)
    any_real = np.stack([r.reshape(n, -1).any(axis=1) for r in real], axis=1)
    diverged = any_flip.any(axis=1)
    first = np.argmax(any_flip, axis=1)
    real_samples = diverged & any_real[np.arange(n), first]
    blocks = []
    for b, (f, r) in enumerate(zip(flipped, real, strict=True)):
        starts_here = real_samples & (first == b)
        blocks.append(_block_flips(golden, b, f, int(r[starts_here].sum()), np.flatnonzero(starts_here)))
    return blocks, diverged


def top1_agreement(golden: Golden, outputs: list[np.ndarray]) -> float | None:
    """Top-1 agreement when the first output is a batch of class scores (N, classes)."""
    ref = golden.outputs[0]
    if ref.ndim != 2 or ref.shape[1] < 2:
        return None
    return float((outputs[0].argmax(1) == ref.argmax(1)).mean())


def _check_shapes(golden: Golden, run: Run, label: str) -> list[str]:
    if len(run.outputs) != len(golden.outputs):
        return [
            f"{label}: the artefact has {len(run.outputs)} outputs, the golden data {len(golden.outputs)}"
        ]
    reasons = [
        f"{label}: output {name} has shape {got.shape}, golden {want.shape}"
        for name, want, got in zip(golden.output_names, golden.outputs, run.outputs, strict=True)
        if want.shape != got.shape
    ]
    if run.masks is not None:
        if len(run.masks) != len(golden.gates):
            reasons.append(
                f"{label}: {len(run.masks)} gate masks, the golden data has {len(golden.gates)} blocks"
            )
        else:
            reasons += [
                f"{label}: mask of {spec.name} has shape {m.shape}, golden {d.shape}"
                for spec, m, d in zip(golden.gates, run.masks, golden.decisions, strict=True)
                if m.shape != d.shape
            ]
    if run.gates is not None and golden.gate_values is not None:
        reasons += [
            f"{label}: gate tensor of {spec.name} has shape {g.shape}, golden {d.shape}"
            for spec, g, d in zip(golden.gates, run.gates, golden.decisions, strict=True)
            if g.shape != d.shape
        ]
    return reasons


def gate_errors(golden: Golden, gates: list[np.ndarray] | None) -> list[GateValueError] | None:
    """Per block, ``|r - r_PyTorch|`` of a run's gate tensors (None: nothing to compare)."""
    if gates is None or golden.gate_values is None:
        return None
    errors = []
    for spec, got, want in zip(golden.gates, gates, golden.gate_values, strict=True):
        # The kept elements first: a fast gate's values come from its margin element by element.
        diff = np.abs(spec.values(sample_gate_values(got)).astype(np.float64) - want)
        errors.append(GateValueError(float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0))
    return errors


def _forced_view(golden: Golden, run: Run, tolerance: Tolerance, real_class: int) -> View:
    every = np.ones(golden.samples, dtype=bool)
    flips = _forced_flips(golden, run.masks, real_class) if run.masks is not None else None
    return View(
        forced=True,
        compared=list(range(golden.samples)),
        outputs=output_errors(golden, run.outputs, every, tolerance),
        flips=flips,
        top1_agreement=top1_agreement(golden, run.outputs),
        gate_errors=gate_errors(golden, run.gates),
    )


def _deployed_view(golden: Golden, run: Run, tolerance: Tolerance, real_class: int) -> View:
    if run.masks is not None:
        flips, diverged = _deployed_flips(golden, run.masks, real_class)
        held = ~diverged
    else:
        flips = None
        held = golden.clear_samples(tolerance.flip_margin or golden.tie_guard)
        diverged = np.zeros(golden.samples, dtype=bool)
    return View(
        forced=False,
        compared=np.flatnonzero(held).tolist(),
        outputs=output_errors(golden, run.outputs, held, tolerance),
        flips=flips,
        diverged=np.flatnonzero(diverged).tolist(),
        diverged_outputs=output_errors(golden, run.outputs, diverged, tolerance) if diverged.any() else [],
        top1_agreement=top1_agreement(golden, run.outputs),
    )


def compare(
    golden: Golden,
    forced: Run | None = None,
    deployed: Run | None = None,
    *,
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
) -> VerificationResult:
    """Compare an artefact's runs on the golden inputs with the golden outputs and decisions.

    ``forced`` is the run with PyTorch's decisions fed in, ``deployed`` the run with the
    artefact's own; give either or both (see the module docstring for what each decides).
    ``tolerance`` defaults to that of ``precision``. Returns the result; a mismatch does not raise.
    """
    tolerance = tolerance or tolerance_for(precision)
    real_class = _real_class(golden, tolerance)
    result = VerificationResult(golden.samples, precision, tolerance, golden.edges, None, None)
    result.runs = {k: v for k, v in (("forced", forced), ("deployed", deployed)) if v is not None}
    reasons = result.reasons
    if forced is None and deployed is None:
        reasons.append("nothing to compare: neither a forced nor a deployed run was given")
        return result
    for label, run in (("forced run", forced), ("deployed run", deployed)):
        if run is not None:
            reasons += _check_shapes(golden, run, label)
    if reasons:
        return result
    if forced is not None:
        result.forced = _forced_view(golden, forced, tolerance, real_class)
        reasons += _view_reasons(result.forced, golden, real_class)
        reasons += _gate_reasons(result.forced, golden, tolerance)
    if deployed is not None:
        result.deployed = view = _deployed_view(golden, deployed, tolerance, real_class)
        reasons += _view_reasons(view, golden, real_class)
        minimum = MIN_TOP1.get(precision.split("-")[0])
        if minimum is not None and view.top1_agreement is not None and view.top1_agreement < minimum:
            reasons.append(f"top-1 agreement as deployed {view.top1_agreement:.2%} is below {minimum:.1%}")
    if result.compared == 0:
        reasons.append(
            "no sample was compared: every sample holds a gate near its threshold; verify with "
            "PyTorch's decisions fed in (the verification graph, verify.forced_graph)"
        )
    result.passed = not reasons
    return result


def _view_reasons(view: View, golden: Golden, real_class: int) -> list[str]:
    """Why one run fails: outputs beyond tolerance on the samples it holds, flips of clear gates."""
    held = "with decisions forced" if view.forced else "as deployed, on samples whose decisions all agree"
    reasons = [
        f"{o.name}: {o.failed_elements} element(s) beyond tolerance {held} "
        f"(max abs {o.max_abs:.3g}, sample {o.worst_sample})"
        for o in view.outputs
        if not o.passed
    ]
    if view.real_flips:
        worst = max(view.flips, key=lambda b: b.real)
        where = (
            "computed differently from PyTorch" if view.forced else "flipped as deployed, first in a sample,"
        )
        reasons.append(
            f"{view.real_flips} gate decision(s) {where} at gates {_margin_words(golden, real_class)} "
            f"(first in {worst.name}, samples {worst.samples_with_real_flips[:5]})"
        )
    return reasons


def _gate_reasons(view: View, golden: Golden, tolerance: Tolerance) -> list[str]:
    """Blocks whose gate values, with decisions forced, stray beyond ``tolerance.gate_atol``."""
    if view.gate_errors is None or tolerance.gate_atol is None:
        return []
    return [
        f"gate values of {spec.name} differ from PyTorch's by {err.mean_abs:.3g} on average (up to "
        f"{err.max_abs:.3g}) with decisions forced, allowed {tolerance.gate_atol:g} on average: "
        f"the arithmetic before the gate is not PyTorch's"
        for spec, err in zip(golden.gates, view.gate_errors, strict=True)
        if err.mean_abs > tolerance.gate_atol
    ]


def _margin_words(golden: Golden, real_class: int) -> str:
    return f"at least {golden.edges[real_class - 1]:g} from their threshold"
