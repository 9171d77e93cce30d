"""Independent re-statement of the public SCConv code's behaviour, used as the test oracle.

Written from the behaviour table of the two public variants (seed/article and repository HEAD),
deliberately in the same operation order as those versions (Python builtin ``sum``, ``view``,
``x.size(1) // 2`` splits) so that a faithful drop-in must reproduce it bit for bit. Also holds
look-alikes that compute *other* functions, to check that conversion refuses them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedNorm(nn.Module):
    """Seed group norm: unbiased std, eps added to the std, gamma/beta shaped (C,1,1)."""

    def __init__(self, c_num, group_num=16, eps=1e-10):
        super().__init__()
        self.group_num = group_num
        self.gamma = nn.Parameter(torch.randn(c_num, 1, 1))
        self.beta = nn.Parameter(torch.zeros(c_num, 1, 1))
        self.eps = eps

    def forward(self, x):
        n, c, h, w = x.size()
        g = x.view(n, self.group_num, -1)
        g = (g - g.mean(dim=2, keepdim=True)) / (g.std(dim=2, keepdim=True) + self.eps)
        return g.view(n, c, h, w) * self.gamma + self.beta


class HeadNormCustom(SeedNorm):
    """HEAD's copy of the custom norm: same maths, parameters renamed weight/bias."""

    def __init__(self, c_num, group_num=16, eps=1e-10):
        nn.Module.__init__(self)
        self.group_num = group_num
        self.weight = nn.Parameter(torch.randn(c_num, 1, 1))
        self.bias = nn.Parameter(torch.zeros(c_num, 1, 1))
        self.eps = eps

    def forward(self, x):
        n, c, h, w = x.size()
        g = x.view(n, self.group_num, -1)
        g = (g - g.mean(dim=2, keepdim=True)) / (g.std(dim=2, keepdim=True) + self.eps)
        return g.view(n, c, h, w) * self.weight + self.bias


def _halves_swap(x_1, x_2):
    a1, b1 = torch.split(x_1, x_1.size(1) // 2, dim=1)
    a2, b2 = torch.split(x_2, x_2.size(1) // 2, dim=1)
    return torch.cat([a1 + b2, b1 + a2], dim=1)


class SeedSRU(nn.Module):
    """Seed SRU: w = gamma / sum(gamma); hard masks r >= t and r < t applied to the raw x."""

    def __init__(self, oup_channels, group_num=16, gate_treshold=0.5):
        super().__init__()
        self.gn = SeedNorm(oup_channels, group_num=group_num)
        self.gate_treshold = gate_treshold
        self.sigomid = nn.Sigmoid()

    def forward(self, x):
        gn_x = self.gn(x)
        w_gamma = self.gn.gamma / sum(self.gn.gamma)
        reweights = self.sigomid(gn_x * w_gamma)
        info_mask = reweights >= self.gate_treshold
        noninfo_mask = reweights < self.gate_treshold
        return _halves_swap(info_mask * x, noninfo_mask * x)


class HeadSRU(nn.Module):
    """HEAD SRU: nn.GroupNorm by default; soft gate where(r > t, 1, r) / where(r > t, 0, r)."""

    def __init__(self, oup_channels, group_num=16, gate_treshold=0.5, torch_gn=True):
        super().__init__()
        self.gn = (
            nn.GroupNorm(num_channels=oup_channels, num_groups=group_num)
            if torch_gn
            else HeadNormCustom(oup_channels, group_num=group_num)
        )
        self.gate_treshold = gate_treshold
        self.sigomid = nn.Sigmoid()

    def forward(self, x):
        gn_x = self.gn(x)
        w_gamma = (self.gn.weight / sum(self.gn.weight)).view(1, -1, 1, 1)
        reweights = self.sigomid(gn_x * w_gamma)
        w1 = torch.where(reweights > self.gate_treshold, torch.ones_like(reweights), reweights)
        w2 = torch.where(reweights > self.gate_treshold, torch.zeros_like(reweights), reweights)
        return _halves_swap(w1 * x, w2 * x)


class PublicCRU(nn.Module):
    """CRU, identical in both variants."""

    def __init__(self, op_channel, alpha=1 / 2, squeeze_radio=2, group_size=2, group_kernel_size=3):
        super().__init__()
        self.up_channel = up = int(alpha * op_channel)
        self.low_channel = low = op_channel - up
        self.squeeze1 = nn.Conv2d(up, up // squeeze_radio, kernel_size=1, bias=False)
        self.squeeze2 = nn.Conv2d(low, low // squeeze_radio, kernel_size=1, bias=False)
        k = group_kernel_size
        self.GWC = nn.Conv2d(up // squeeze_radio, op_channel, k, stride=1, padding=k // 2, groups=group_size)
        self.PWC1 = nn.Conv2d(up // squeeze_radio, op_channel, kernel_size=1, bias=False)
        self.PWC2 = nn.Conv2d(
            low // squeeze_radio, op_channel - low // squeeze_radio, kernel_size=1, bias=False
        )
        self.advavg = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        up, low = torch.split(x, [self.up_channel, self.low_channel], dim=1)
        up, low = self.squeeze1(up), self.squeeze2(low)
        y1 = self.GWC(up) + self.PWC1(up)
        y2 = torch.cat([self.PWC2(low), low], dim=1)
        out = torch.cat([y1, y2], dim=1)
        out = F.softmax(self.advavg(out), dim=1) * out
        out1, out2 = torch.split(out, out.size(1) // 2, dim=1)
        return out1 + out2


class SeedScConv(nn.Module):
    def __init__(
        self,
        op_channel,
        group_num=16,
        gate_treshold=0.5,
        alpha=1 / 2,
        squeeze_radio=2,
        group_size=2,
        group_kernel_size=3,
    ):
        super().__init__()
        self.SRU = SeedSRU(op_channel, group_num=group_num, gate_treshold=gate_treshold)
        self.CRU = PublicCRU(op_channel, alpha, squeeze_radio, group_size, group_kernel_size)

    def forward(self, x):
        return self.CRU(self.SRU(x))


class HeadScConv(nn.Module):
    """HEAD block: group_num defaults to 4 and torch_gn is not passed (SRU's default True)."""

    def __init__(
        self,
        op_channel,
        group_num=4,
        gate_treshold=0.5,
        alpha=1 / 2,
        squeeze_radio=2,
        group_size=2,
        group_kernel_size=3,
    ):
        super().__init__()
        self.SRU = HeadSRU(op_channel, group_num=group_num, gate_treshold=gate_treshold)
        self.CRU = PublicCRU(op_channel, alpha, squeeze_radio, group_size, group_kernel_size)

    def forward(self, x):
        return self.CRU(self.SRU(x))


# ---- look-alikes that compute something else (conversion must refuse them) -------------------


class NormGatingSRU(SeedSRU):
    """Same layout as the seed SRU, but the masks gate GN(x) instead of x."""

    def forward(self, x):
        gn_x = self.gn(x)
        reweights = torch.sigmoid(gn_x * (self.gn.gamma / sum(self.gn.gamma)))
        return _halves_swap((reweights >= self.gate_treshold) * gn_x, (reweights < self.gate_treshold) * gn_x)


class NormGatingScConv(SeedScConv):
    def __init__(self, op_channel, **kw):
        super().__init__(op_channel, **kw)
        self.SRU = NormGatingSRU(op_channel, group_num=kw.get("group_num", 16))


class PrereleaseScConv(nn.Module):
    """Pre-release layout: the channel unit is stored as ``GRU`` and the gate uses softmax(gamma)."""

    def __init__(self, op_channel, group_num=16):
        super().__init__()
        self.SRU = SeedSRU(op_channel, group_num=group_num)
        self.GRU = PublicCRU(op_channel)

    def forward(self, x):
        return self.GRU(self.SRU(x))
