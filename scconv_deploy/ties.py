"""Gate ties: how close each SRU gate value lies to its threshold, and inputs that have none.

A gate value ``r`` within rounding of the threshold ``t`` is a *tie*: two correct
implementations may decide it differently, and that moves the output by about ``|x|``. Exact
comparisons between implementations are therefore made on *tie-free* inputs, where every gate
value keeps at least ``guard`` away from ``t``; ties are tested on their own. The default guard,
1e-5, is ~100x the float32 rounding of a gate value near 0.5 (ulp(0.5) = 6e-8) and small enough
that nudging keeps inputs realistic.

Works on the reference and the export form alike (``ScConv``/``SRU`` and their export twins).
"""

from __future__ import annotations

import torch
from torch import nn


def _sru(block: nn.Module) -> nn.Module:
    sru = getattr(block, "SRU", block)
    if not hasattr(sru, "gate_values"):
        raise TypeError(f"{type(block).__name__} is not an SCConv block or SRU")
    return sru


def _threshold(sru: nn.Module) -> float:
    """The threshold as a float32 value, as PyTorch compares it against a float32 gate."""
    return float(torch.tensor(sru.gate_treshold, dtype=torch.float32))


def gate_margins(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Signed distance ``r - t`` of every gate value of ``block``'s SRU for input ``x`` (shape of x)."""
    sru = _sru(block)
    with torch.no_grad():
        return sru.gate_values(x) - _threshold(sru)


def _gate_scale(sru: nn.Module) -> torch.Tensor:
    """Per-channel factor a_c with z = x_hat * a_c + b_c (reference or export form), shape (C,)."""
    if hasattr(sru, "scale"):
        return sru.scale.detach()
    return (sru.gn.weight.reshape(-1) * sru.gate_weights().reshape(-1)).detach()


def untie(
    block: nn.Module,
    x: torch.Tensor,
    guard: float = 1e-5,
    max_rounds: int = 25,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """A copy of ``x`` whose gate values all lie at least ``guard`` from the threshold.

    ``where`` (broadcastable to ``x``) restricts the change to the marked elements; ties
    elsewhere are left alone.

    Each tied element is moved, along its own gate's slope, far enough to push its gate value
    ~4·guard past the threshold on the side it already leans to (at most half a group std per
    step). Moving an element shifts its group's statistics, so this repeats until no tie is
    left. Raises ``ValueError`` if a channel's gate cannot be moved by its input (a zero gate
    weight with its bias on the threshold) or the ties do not clear.
    """
    sru = _sru(block)
    t = _threshold(sru)
    groups = sru.group_num
    a = _gate_scale(sru).to(x.dtype)
    x = x.detach().clone()
    n, c = x.shape[:2]
    for _ in range(max_rounds):
        d = gate_margins(sru, x)
        tied = d.abs() < guard
        if where is not None:
            tied &= where
        if not tied.any():
            return x
        if (a[tied.nonzero()[:, 1]].abs() < 1e-12).any():
            raise ValueError("a tied gate has a zero weight: no input change can move it off the threshold")
        std = x.reshape(n, groups, -1).std(dim=2).repeat_interleave(c // groups, dim=1)
        std = std.clamp_min(1e-6)[:, :, None, None].expand_as(x)
        lean = torch.where(d >= 0, 1.0, -1.0)
        dz = lean * 4.0 * guard / (t * (1.0 - t))  # dr ≈ r(1-r)·dz, r ≈ t
        # Linear step, at most half a group std: small groups are strongly non-linear.
        dx = torch.maximum(torch.minimum(dz * std / a[None, :, None, None], std / 2), -std / 2)
        x = torch.where(tied, x + dx, x)
    left = gate_margins(sru, x).abs() < guard
    if where is not None:
        left &= where
    weakest = a[left.nonzero()[:, 1]].abs().min().item()
    raise ValueError(
        f"{int(left.sum())} gate ties within {guard} did not clear after {max_rounds} rounds "
        f"(weakest gate scale {weakest:.3g}); use a smaller guard"
    )
