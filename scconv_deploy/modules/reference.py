"""Reference SCConv: a drop-in for both public variants, bit for bit.

``ScConv(op_channel, group_num, gate_treshold, alpha, squeeze_radio, group_size,
group_kernel_size)`` takes the public constructor keywords (misspellings included; the aliases
``gate_threshold`` and ``squeeze_ratio`` are accepted too) plus two switches:

* ``gate="hard"`` — seed/article: ``w1 = (r >= t)``, ``w2 = (r < t)``;
  ``gate="soft"`` — repository HEAD: ``w1 = where(r > t, 1, r)``, ``w2 = where(r > t, 0, r)``.
* ``torch_gn=False`` — seed's ``GroupBatchnorm2d`` (unbiased std, ``eps`` added to the std,
  parameters ``gamma``/``beta`` shaped (C,1,1)); ``torch_gn=True`` — ``nn.GroupNorm``
  (``weight``/``bias`` shaped (C,)).

Parameter names match the public code, so state dicts of either variant load with
``strict=True``. The arithmetic is written in the same order as the public code (including the
Python builtin ``sum`` over the norm weight), so outputs are identical, not merely close. This
module is the specification the export form and every artefact are checked against.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .config import UNSET, ScConvConfig, check_cru, check_sru, cru_channels, resolve_aliases


def _only(kwargs: dict[str, Any], name: str) -> Any:
    """The one keyword a unit takes after alias resolution; anything else is a typo."""
    value = kwargs.pop(name)
    if kwargs:
        raise ConfigError(f"unexpected keyword(s) {sorted(kwargs)}")
    return value


class GroupBatchnorm2d(nn.Module):
    """The seed's group norm: per group ``(x - mean) / (std_unbiased + eps)``, then ``gamma``/``beta``.

    Not ``nn.GroupNorm``: the std is unbiased and ``eps`` (1e-10) is added to the std, outside
    the square root. Also loads the repository HEAD's copy of this class, whose parameters are
    named ``weight``/``bias``.
    """

    def __init__(self, c_num: int, group_num: int = 16, eps: float = 1e-10) -> None:
        super().__init__()
        self.group_num = group_num
        self.gamma = nn.Parameter(torch.randn(c_num, 1, 1))
        self.beta = nn.Parameter(torch.zeros(c_num, 1, 1))
        self.eps = eps

    @property
    def weight(self) -> nn.Parameter:
        """The affine scale under the name ``nn.GroupNorm`` uses."""
        return self.gamma

    @property
    def bias(self) -> nn.Parameter:
        return self.beta

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for new, old in (("gamma", "weight"), ("beta", "bias")):
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.reshape(n, self.group_num, -1)
        mean = x.mean(dim=2, keepdim=True)
        std = x.std(dim=2, keepdim=True)
        x = (x - mean) / (std + self.eps)
        x = x.reshape(n, c, h, w)
        return x * self.gamma + self.beta


class SRU(nn.Module):
    """Spatial reconstruction unit: group-norm-based gate, then a cross swap of channel halves."""

    def __init__(
        self,
        oup_channels: int,
        group_num: int = 16,
        gate_treshold: float = UNSET,
        torch_gn: bool = False,
        gate: str = "hard",
        **aliases: Any,
    ) -> None:
        super().__init__()
        gate_treshold = _only(resolve_aliases({"gate_treshold": gate_treshold, **aliases}), "gate_treshold")
        check_sru(oup_channels, group_num, gate_treshold, gate, torch_gn)
        self.gn = (
            nn.GroupNorm(num_channels=oup_channels, num_groups=group_num)
            if torch_gn
            else GroupBatchnorm2d(oup_channels, group_num=group_num)
        )
        self.gate_treshold = float(gate_treshold)
        self.gate = gate
        self.torch_gn = torch_gn
        self.group_num = group_num
        self.channels = oup_channels

    def gate_weights(self) -> torch.Tensor:
        """``w = weight / sum(weight)`` with Python's builtin ``sum``, as the public code computes it."""
        weight = self.gn.weight
        return (weight / sum(weight)).view(1, -1, 1, 1)

    def gate_values(self, x: torch.Tensor) -> torch.Tensor:
        """The gate before thresholding, ``r = sigmoid(GN(x) * w)``; compared against ``gate_treshold``."""
        return torch.sigmoid(self.gn(x) * self.gate_weights())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.gate_values(x)
        t = self.gate_treshold
        if self.gate == "hard":
            w1, w2 = r >= t, r < t
        else:
            w1 = torch.where(r > t, torch.ones_like(r), r)
            w2 = torch.where(r > t, torch.zeros_like(r), r)
        x_1, x_2 = w1 * x, w2 * x
        x_11, x_12 = torch.split(x_1, x_1.size(1) // 2, dim=1)
        x_21, x_22 = torch.split(x_2, x_2.size(1) // 2, dim=1)
        return torch.cat([x_11 + x_22, x_12 + x_21], dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, gate={self.gate!r}, gate_treshold={self.gate_treshold}"


class CRU(nn.Module):
    """Channel reconstruction unit: squeeze, group-wise + point-wise transform, softmax fuse."""

    def __init__(
        self,
        op_channel: int,
        alpha: float = 1 / 2,
        squeeze_radio: int = UNSET,
        group_size: int = 2,
        group_kernel_size: int = 3,
        **aliases: Any,
    ) -> None:
        super().__init__()
        s = _only(resolve_aliases({"squeeze_radio": squeeze_radio, **aliases}), "squeeze_radio")
        check_cru(op_channel, alpha, s, group_size, group_kernel_size)
        self.up_channel, self.low_channel = up, low = cru_channels(op_channel, alpha)
        self.squeeze1 = nn.Conv2d(up, up // s, kernel_size=1, bias=False)
        self.squeeze2 = nn.Conv2d(low, low // s, kernel_size=1, bias=False)
        k = group_kernel_size
        self.GWC = nn.Conv2d(up // s, op_channel, kernel_size=k, stride=1, padding=k // 2, groups=group_size)
        self.PWC1 = nn.Conv2d(up // s, op_channel, kernel_size=1, bias=False)
        self.PWC2 = nn.Conv2d(low // s, op_channel - low // s, kernel_size=1, bias=False)
        self.advavg = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.up_channel, self.low_channel], dim=1)
        up, low = self.squeeze1(up), self.squeeze2(low)
        y1 = self.GWC(up) + self.PWC1(up)
        y2 = torch.cat([self.PWC2(low), low], dim=1)
        out = torch.cat([y1, y2], dim=1)
        out = F.softmax(self.advavg(out), dim=1) * out
        out1, out2 = torch.split(out, out.size(1) // 2, dim=1)
        return out1 + out2


class ScConv(nn.Module):
    """SCConv (CVPR 2023): ``CRU(SRU(x))``, C channels in and out, spatial size kept.

    Defaults follow the seed article: ``gate="hard"``, ``torch_gn=False``, ``group_num=16``.
    For the repository HEAD use ``ScConv(C, group_num=4, gate="soft", torch_gn=True)`` or
    ``ScConv(C, **VARIANTS["head"])``.
    """

    def __init__(
        self,
        op_channel: int,
        group_num: int = 16,
        gate_treshold: float = UNSET,
        alpha: float = 1 / 2,
        squeeze_radio: int = UNSET,
        group_size: int = 2,
        group_kernel_size: int = 3,
        *,
        gate: str = "hard",
        torch_gn: bool = False,
        **aliases: Any,
    ) -> None:
        super().__init__()
        kw = resolve_aliases({"gate_treshold": gate_treshold, "squeeze_radio": squeeze_radio, **aliases})
        self.config = ScConvConfig(
            op_channel=op_channel,
            group_num=group_num,
            alpha=alpha,
            group_size=group_size,
            group_kernel_size=group_kernel_size,
            gate=gate,
            torch_gn=torch_gn,
            **kw,
        )
        cfg = self.config
        self.SRU = SRU(cfg.op_channel, cfg.group_num, cfg.gate_treshold, torch_gn=cfg.torch_gn, gate=cfg.gate)
        self.CRU = CRU(cfg.op_channel, cfg.alpha, cfg.squeeze_radio, cfg.group_size, cfg.group_kernel_size)

    @property
    def variant(self) -> str:
        return self.config.variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CRU(self.SRU(x))
