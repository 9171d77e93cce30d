"""How an export-form SRU takes its decision: the *exact* gate or the *fast* one.

The SRU decides once per element: its mask is ``[r < t]`` for the hard gate and ``[r > t]`` for the
soft one, with ``r = sigmoid(z)`` and ``z`` the group norm's output times ``w``. Both forms build the
mask from float arithmetic only (no boolean tensors), with ``step(d) = Ceil(d)``, which is ``[d > 0]``
exactly for every float ``-1 < d < 1``:

* **exact** — ``r`` first, then ``step(t - r)`` (hard) or ``step(r - t)`` (soft): PyTorch's
  comparison of a float32 ``r`` with ``t``, bit for bit, ties (``r == t``) included. After the
  norm's affine it costs three full-tensor passes: ``Sigmoid``, ``Sub``, ``Ceil``.
* **fast** (hard gate) — ``sigmoid(z) >= t`` is ``z >= logit(t)``, decided without the sigmoid:
  the group norm's own affine computes the *decision margin* ``q = k·(logit(t) - z)`` and the mask
  is ``step(q) = [z < logit(t)]``, one pass after the norm. ``k = 2^-m`` (``decision_scale``) keeps
  ``|q| < 1/2`` for every input — a normalised value is bounded by ``sqrt(n - 1)`` for a group of
  ``n`` elements, and ``NORMALISED_BOUND`` covers groups of up to 2^34 — so ``Ceil`` is the exact
  step, and scaling by a power of two rounds nothing away. It computes the same function as the
  exact form except at ties: float32 ``sigmoid`` rounds every ``z`` within about 3e-8 of
  ``logit(0.5) = 0`` to exactly 0.5, which the exact form decides as a tie and the fast form by the
  sign of ``z``. Verification feeds PyTorch's decisions into the artefact
  (``scconv_deploy.verify``), so such a flip is explained, never a failure.

The soft gate weighs ``x`` by ``r`` itself, so it needs the sigmoid anyway, and its mask
``step(r - t)`` is then as cheap as any other: a soft SRU has one form (``gates="fast"`` leaves it
exact). In the fast form the SRU's gate probe sees ``q``; ``scconv_deploy.gates.GateSpec`` turns it
back into ``r = sigmoid(logit(t) - q / k)`` for margins and reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError

GATE_FORMS = ("exact", "fast")
#: The form ``to_deploy`` builds unless told otherwise (see the README's "The export form"): the exact
#: one. The fast form saves 4-9 % of a block's kernel time, within a whole network's noise, and its
#: margin scale ``k`` lies below FP16's normal range: an FP32 file with fast gates that a tool
#: converts to FP16 by itself (TensorRT's weakly typed ``--fp16``, an FP16 converter without a block
#: list) decides its gates badly, where exact gates keep working about as well as FP16 allows.
DEFAULT_GATE_FORM = "exact"
#: Largest |normalised value| the fast form's scale allows for: ``|x - mean| <= std·sqrt(n - 1)``
#: (Samuelson's inequality), so 2^17 covers every group of up to 2^34 elements.
NORMALISED_BOUND = 2.0**17


def step(d: torch.Tensor) -> torch.Tensor:
    """``[d > 0]`` as float, exactly, for ``-1 < d < 1`` (values are 1 or ±0): ``Ceil(d)``."""
    return torch.ceil(d)


def check_gate_form(gates: object) -> str:
    """``gates`` if it names a gate form, else ``ConfigError`` naming the choices."""
    if gates not in GATE_FORMS:
        raise ConfigError(f"gates={gates!r}: use one of {', '.join(map(repr, GATE_FORMS))}")
    return str(gates)


def float32(value: float) -> float:
    """``value`` rounded to float32, as PyTorch compares a float32 tensor with a Python scalar."""
    return float(torch.tensor(value, dtype=torch.float32))


def logit(t: float) -> float:
    """``logit(t)`` in float64: where ``sigmoid`` crosses the (float32) threshold ``t``."""
    return math.log(t / (1.0 - t))


@dataclass(frozen=True)
class FastDecision:
    """The fast hard gate's affine: ``q = weight·GN(x) + bias = scale·(logit(t) - z)`` per channel.

    ``z = GN(x)·gain + shift`` is the gate's input (``gain`` and ``shift`` folded at conversion,
    ``gain`` times the seed norm's correction at run time, applied to ``weight`` alike).
    """

    weight: torch.Tensor  # -scale·gain, (C,) float32
    bias: torch.Tensor  # scale·(logit(t) - shift), (C,) float32
    scale: float  # k = 2^-m


def decision_scale(gain: torch.Tensor, shift: torch.Tensor, logit_t: float) -> float:
    """The largest power of two ``k <= 1`` with ``|k·(logit(t) - z)| < 1/2`` for every input."""
    bound = gain.abs().max().item() * NORMALISED_BOUND + (shift - logit_t).abs().max().item()
    if not math.isfinite(bound):
        raise ConfigError("the SRU's norm parameters are not finite: the fast gate cannot bound its margin")
    exponent = max(0, math.ceil(math.log2(bound)) + 1) if bound > 0 else 0
    if exponent > 120:
        raise ConfigError(
            f"the SRU's norm parameters reach {bound:.3g}: too large for the fast gate's float32 margin; "
            f"use gates='exact'"
        )
    return 2.0**-exponent


def fast_decision(gain: torch.Tensor, shift: torch.Tensor, threshold: float) -> FastDecision:
    """The fast form's affine for a hard gate with per-channel ``gain``, ``shift`` and threshold ``t``."""
    logit_t = logit(float32(threshold))
    gain64, shift64 = gain.detach().double().reshape(-1), shift.detach().double().reshape(-1)
    k = decision_scale(gain64, shift64, logit_t)
    return FastDecision((-k * gain64).float(), (k * (logit_t - shift64)).float(), k)
