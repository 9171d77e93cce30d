"""Decision-aware comparison of an artefact's outputs with golden PyTorch data.

SCConv's gates make plain atol/rtol comparison misleading: a gate value within rounding of its
threshold (a *tie*) may be decided differently by a correct runtime, which moves that pixel by
about |x| and, through the CRU's softmax, the whole sample a little. So:

* samples whose gate decisions all agree with PyTorch's are compared tightly (Polygraphy's
  ``SimpleCompareFunc``): any mismatch there is arithmetic error, and fails;
* gate decisions that differ are counted. A sample whose first differing block differs only at
  ties (|r - t| < the golden tie guard) is set aside and reported — the later blocks of that
  sample see a changed input and may differ too; a sample whose first differing block flips a
  clearly decided gate is a real error, and fails;
* when the artefact exposes no gate values (a plain engine), samples that hold a tie are set
  aside and reported; the rest are compared tightly — a real flip there shows as output error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from polygraphy.comparator import IterationResult
from polygraphy.comparator.compare import SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from .golden import Golden


@dataclass(frozen=True)
class OutputError:
    """Error of one output over the compared samples (relative errors against max |golden|)."""

    name: str
    max_abs: float
    mean_abs: float
    max_rel: float
    passed: bool


@dataclass(frozen=True)
class BlockFlips:
    name: str
    gates: int  # gate decisions compared in this block (all samples)
    flipped: int
    real: int  # non-tie flips in samples whose divergence starts in this block
    downstream: int  # flips in samples that already diverged in an earlier block
    samples_with_real_flips: list[int] = field(default_factory=list)


@dataclass
class VerificationResult:
    samples: int
    compared: list[int]  # samples compared tightly
    tie_samples: list[int]  # samples set aside or reported for tie flips
    outputs: list[OutputError]
    tie_outputs: list[OutputError]  # errors on the tie samples (reported, not failed)
    flips: list[BlockFlips] | None  # None when the artefact exposed no gate values
    rtol: float
    atol: float
    passed: bool = False
    reasons: list[str] = field(default_factory=list)  # why it failed
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures

    @property
    def gates_compared(self) -> int:
        return sum(b.gates for b in self.flips or [])

    @property
    def gates_flipped(self) -> int:
        return sum(b.flipped for b in self.flips or [])

    @property
    def real_flips(self) -> int:
        return sum(b.real for b in self.flips or [])

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            gates_compared=self.gates_compared, gates_flipped=self.gates_flipped, real_flips=self.real_flips
        )
        return d

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"verification {verdict}: {len(self.compared)}/{self.samples} samples compared tightly "
            f"(rtol {self.rtol:g}, atol {self.atol:g}), {len(self.tie_samples)} with gate ties"
        ]
        for o in self.outputs:
            lines.append(
                f"  {o.name}: max abs {o.max_abs:.3g}, mean abs {o.mean_abs:.3g}, max rel {o.max_rel:.3g}"
            )
        if self.flips is not None:
            agree = self.gates_compared - self.gates_flipped
            lines.append(
                f"  gate decisions: {agree}/{self.gates_compared} agree, {self.gates_flipped} flipped "
                f"({self.real_flips} not ties)"
            )
        lines += [f"  ! {r}" for r in self.reasons] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _errors(
    names: list[str],
    golden: list[np.ndarray],
    actual: list[np.ndarray],
    rows: np.ndarray,
    rtol: float,
    atol: float,
) -> list[OutputError]:
    if not rows.any():
        return []
    ref = IterationResult({n: g[rows] for n, g in zip(names, golden, strict=True)}, runner_name="pytorch")
    got = IterationResult({n: a[rows] for n, a in zip(names, actual, strict=True)}, runner_name="artefact")
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        results = SimpleCompareFunc(rtol=rtol, atol=atol, check_shapes=True)(ref, got)
    errors = []
    for name, g, a in zip(names, golden, actual, strict=True):
        diff = np.abs(a[rows].astype(np.float64) - g[rows].astype(np.float64))
        scale = float(np.abs(g[rows]).max()) or 1.0
        errors.append(
            OutputError(
                name, float(diff.max()), float(diff.mean()), float(diff.max()) / scale, bool(results[name])
            )
        )
    return errors


def _classify_flips(
    golden: Golden, gate_values: list[np.ndarray]
) -> tuple[list[BlockFlips], np.ndarray, np.ndarray]:
    """Per block flip counts; samples whose first flip is a tie (set aside); samples with real flips.

    A flip changes that block's output, so every later block of the sample may legitimately
    decide differently: only the first block that flips in a sample says whether the sample's
    divergence began at a tie (blocks are taken in execution order, the order of the gates).
    """
    n = golden.samples
    flipped = [
        spec.decide(r) != want
        for spec, r, want in zip(golden.gates, gate_values, golden.decisions, strict=True)
    ]
    nontie = [f & ~tie for f, tie in zip(flipped, golden.ties, strict=True)]
    any_flip = np.stack([f.reshape(n, -1).any(axis=1) for f in flipped], axis=1)
    any_real = np.stack([f.reshape(n, -1).any(axis=1) for f in nontie], axis=1)
    diverged = any_flip.any(axis=1)
    first = np.argmax(any_flip, axis=1)
    real_samples = diverged & any_real[np.arange(n), first]
    blocks = []
    for b, (spec, f, nt) in enumerate(zip(golden.gates, flipped, nontie, strict=True)):
        starts_here = real_samples & (first == b)
        blocks.append(
            BlockFlips(
                spec.name,
                gates=int(f.size),
                flipped=int(f.sum()),
                real=int(nt[starts_here].sum()),
                downstream=int(f[diverged & (first < b)].sum()),
                samples_with_real_flips=np.flatnonzero(starts_here).tolist()[:20],
            )
        )
    return blocks, diverged & ~real_samples, real_samples


def compare(
    golden: Golden,
    outputs: list[np.ndarray],
    gate_values: list[np.ndarray] | None = None,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> VerificationResult:
    """Compare an artefact's ``outputs`` (and, if it exposes them, its gate values) with ``golden``.

    Tolerances are Polygraphy's element-wise ones: an element fails when it exceeds both ``atol``
    and ``rtol``. Returns the result; raising or exiting is the caller's choice.
    """
    n = golden.samples
    reasons: list[str] = []
    if len(outputs) != len(golden.outputs):
        reasons.append(f"artefact has {len(outputs)} outputs, golden data {len(golden.outputs)}")
        return VerificationResult(n, [], [], [], [], None, rtol, atol, False, reasons)
    for name, want, got in zip(golden.output_names, golden.outputs, outputs, strict=True):
        if want.shape != got.shape:
            reasons.append(f"output {name}: shape {got.shape} differs from golden {want.shape}")
    if reasons:
        return VerificationResult(n, [], [], [], [], None, rtol, atol, False, reasons)

    flips = None
    if gate_values is not None:
        flips, set_aside, real_samples = _classify_flips(golden, gate_values)
        if real_samples.any():
            worst = max(flips, key=lambda b: b.real)
            reasons.append(
                f"{int(real_samples.sum())} sample(s) have gate decisions flipped away from ties "
                f"({sum(b.real for b in flips)} gates, first in {worst.name})"
            )
    else:
        set_aside = golden.tie_samples()
    compared = ~set_aside
    errors = _errors(golden.output_names, golden.outputs, outputs, compared, rtol, atol)
    tie_errors = _errors(golden.output_names, golden.outputs, outputs, set_aside, rtol, atol)
    for e in errors:
        if not e.passed:
            reasons.append(
                f"output {e.name}: max abs error {e.max_abs:.3g} exceeds atol {atol:g} and rtol {rtol:g}"
            )
    notes: list[str] = []
    if not compared.any():
        message = "no sample could be compared tightly: every sample holds a gate tie"
        if flips is None:  # nothing known about the decisions: inconclusive
            reasons.append(f"{message}; verify with the gate outputs exposed (gates.with_gate_outputs)")
        else:  # every divergence was shown to begin at a tie
            notes.append(message)
    return VerificationResult(
        n,
        np.flatnonzero(compared).tolist(),
        np.flatnonzero(set_aside).tolist(),
        errors,
        tie_errors,
        flips,
        rtol,
        atol,
        passed=not reasons,
        reasons=reasons,
    )
