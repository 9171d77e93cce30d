"""The export form of SCConv: the reference function, written for ONNX and TensorRT.

Built from a reference (or structurally identical foreign) module by ``from_reference``; it
computes the same function with

* **no boolean tensors and no comparison ops**: the gate masks are float arithmetic.
  ``[d > 0] = Relu(Sign(d))`` is exact for every float ``d`` (``Sign(0) = 0``), so with
  ``d = r - t`` it reproduces the soft gate's strict ``r > t``, and with ``d = t - r`` it gives
  ``[r < t]``, the complement of the hard gate's ``r >= t`` — ties (``r == t``) fall exactly as
  in PyTorch. The threshold is compared in float32, as PyTorch compares a tensor with a scalar;
* **parameter-only quantities folded at conversion**: ``w = weight / sum(weight)`` (same
  summation order as the public code), ``scale = weight * w``, ``shift = bias * w`` are buffers,
  so ``GN(x) * w`` becomes one group norm with affine ``(scale, shift)``;
* **static channel structure**: every split size is a Python int fixed at conversion;
* **dynamic N, H, W**: nothing else reads the input's shape, except the seed norm's unbiased
  correction ``sqrt((n - 1) / n)``, ``n = (C/G)·H·W``, which must follow H·W at run time.

The gate itself keeps the sigmoid: ``sigmoid(z) >= t`` is not the same as ``z >= logit(t)`` in
float32 (sigmoid rounds to exactly 0.5 for |z| below ~3e-8), and decisions must match PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import variant_name

if TYPE_CHECKING:
    from .reference import CRU, SRU, ScConv


def _conv_copy(conv: nn.Conv2d) -> nn.Conv2d:
    """A detached copy of a convolution (the export form never shares storage with its source)."""
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    new.load_state_dict({k: v.detach().clone() for k, v in conv.state_dict().items()})
    return new.to(conv.weight.device, conv.weight.dtype)


class ExportSRU(nn.Module):
    """SRU in export form. Construct with :meth:`from_reference`."""

    def __init__(
        self,
        scale: torch.Tensor,
        shift: torch.Tensor,
        group_num: int,
        gate_treshold: float,
        gate: str,
        torch_gn: bool,
        eps: float,
        origin: str = "",
    ) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().reshape(-1))
        self.register_buffer("shift", shift.detach().clone().reshape(-1))
        self.channels = int(self.scale.numel())
        self.half = self.channels // 2
        self.group_num = group_num
        self.gate_treshold = float(gate_treshold)
        # The threshold exactly as PyTorch uses it against a float32 gate: rounded to float32.
        self._t = float(torch.tensor(gate_treshold, dtype=torch.float32))
        self.gate = gate
        self.torch_gn = torch_gn
        # nn.GroupNorm: eps inside the sqrt. Seed norm: eps added to the std, so eps**2 inside
        # the sqrt keeps an all-constant group finite (0 / eps) exactly as the seed does.
        self.norm_eps = eps if torch_gn else eps * eps
        self.origin = origin
        # Identity that sees the gate values the forward uses: a forward hook on it reads them
        # (debug exports and verification count gate decisions this way). Exports as nothing.
        self.gate_probe = nn.Identity()

    @classmethod
    def from_reference(cls, sru: SRU, origin: str = "") -> ExportSRU:
        with torch.no_grad():
            w = sru.gate_weights().reshape(-1)
            scale = sru.gn.weight.reshape(-1) * w
            shift = sru.gn.bias.reshape(-1) * w
        return cls(
            scale,
            shift,
            group_num=sru.group_num,
            gate_treshold=sru.gate_treshold,
            gate=sru.gate,
            torch_gn=sru.torch_gn,
            eps=float(sru.gn.eps),
            origin=origin or f"{type(sru).__module__}.{type(sru).__qualname__}",
        )

    @property
    def variant(self) -> str:
        return variant_name(self.gate, self.torch_gn)

    def gate_values(self, x: torch.Tensor) -> torch.Tensor:
        """``r = sigmoid(GN(x) * w)`` computed the export form's way."""
        scale = self.scale
        if not self.torch_gn:
            # Unbiased std: x_hat_unbiased = x_hat_biased * sqrt((n - 1) / n), n = (C/G)·H·W.
            n = torch.tensor(x.shape[2] * x.shape[3] * (self.channels // self.group_num), dtype=x.dtype)
            scale = scale * torch.sqrt(1.0 - 1.0 / n)
        return torch.sigmoid(F.group_norm(x, self.group_num, scale, self.shift, self.norm_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.gate_probe(self.gate_values(x))
        if self.gate == "hard":
            below = torch.relu(torch.sign(self._t - r))  # [r < t]; its complement is r >= t
            x2 = below * x
            x1 = x - x2  # exactly x or 0
        else:
            above = torch.relu(torch.sign(r - self._t))  # [r > t]
            w1 = torch.maximum(r, above)  # 1 where r > t, else r   (0 <= r <= 1)
            w2 = w1 - above  # 0 where r > t, else r
            x1, x2 = w1 * x, w2 * x
        x2_a, x2_b = torch.split(x2, [self.half, self.half], dim=1)
        return x1 + torch.cat([x2_b, x2_a], dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, variant={self.variant!r}, gate_treshold={self.gate_treshold}"


class ExportCRU(nn.Module):
    """CRU in export form: the reference computation with every channel split a constant."""

    def __init__(self, cru: CRU, origin: str = "") -> None:
        super().__init__()
        self.origin = origin or f"{type(cru).__module__}.{type(cru).__qualname__}"
        self.up_channel = int(cru.up_channel)
        self.low_channel = int(cru.low_channel)
        self.squeeze1 = _conv_copy(cru.squeeze1)
        self.squeeze2 = _conv_copy(cru.squeeze2)
        self.GWC = _conv_copy(cru.GWC)
        self.PWC1 = _conv_copy(cru.PWC1)
        self.PWC2 = _conv_copy(cru.PWC2)
        self.channels = self.GWC.out_channels

    @classmethod
    def from_reference(cls, cru: CRU) -> ExportCRU:
        return cls(cru)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.up_channel, self.low_channel], dim=1)
        up, low = self.squeeze1(up), self.squeeze2(low)
        y1 = self.GWC(up) + self.PWC1(up)
        y2 = torch.cat([self.PWC2(low), low], dim=1)
        out = torch.cat([y1, y2], dim=1)
        out = torch.softmax(F.adaptive_avg_pool2d(out, 1), dim=1) * out
        out1, out2 = torch.split(out, [self.channels, self.channels], dim=1)
        return out1 + out2


class ExportScConv(nn.Module):
    """SCConv in export form: ``CRU(SRU(x))`` with both units converted."""

    def __init__(self, sru: ExportSRU, cru: ExportCRU, origin: str = "") -> None:
        super().__init__()
        self.SRU = sru
        self.CRU = cru
        self.origin = origin or "ScConv"

    @classmethod
    def from_reference(cls, block: ScConv) -> ExportScConv:
        origin = f"{type(block).__module__}.{type(block).__qualname__}"
        return cls(ExportSRU.from_reference(block.SRU), ExportCRU.from_reference(block.CRU), origin)

    @property
    def variant(self) -> str:
        return self.SRU.variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CRU(self.SRU(x))
