"""The export form of SCConv: the reference function, written for ONNX and TensorRT.

Built from a reference (or structurally identical foreign) module by ``from_reference``; it
computes the same function with

* **no boolean tensors and no comparison ops**: the gate masks are float arithmetic.
  ``[d > 0] = Ceil(d)`` is exact for every float ``-1 < d < 1`` (``Ceil`` gives 1 on (0, 1) and
  (-)0 on (-1, 0]), and a gate value ``r`` in [0, 1] against a threshold ``t`` in (0, 1) keeps
  ``d = r - t`` and ``d = t - r`` in that range; the difference of two floats is zero only when
  they are equal, so ``Ceil(r - t)`` is the soft gate's strict ``r > t`` and ``Ceil(t - r)`` is
  ``[r < t]``, the complement of the hard gate's ``r >= t`` — ties (``r == t``) fall exactly as in
  PyTorch. The threshold is compared in float32, as PyTorch compares a tensor with a scalar;
* **parameter-only quantities folded at conversion**: ``w = weight / sum(weight)`` (same
  summation order as the public code), ``scale = weight * w``, ``shift = bias * w`` are buffers,
  so ``GN(x) * w`` becomes one group norm with affine ``(scale, shift)``;
* **static channel structure**: every split size and channel index is fixed at conversion;
* **dynamic N, H, W**: nothing else reads the input's shape, except the seed norm's unbiased
  correction ``sqrt(1 - 1/n)``, ``n = (C/G)·H·W``, which must follow H·W at run time.

Fusions (each a small function below; all exact up to float32 re-association — they add
products of the same weights in another order — and identical at gate ties, which only the
SRU decides):

* the SRU's half swap is one ``Gather`` along the channels (``swap_halves_index``), not a
  split plus a concat: one copy of the tensor instead of two;
* the CRU's ``cat([PWC2(low), low])`` is one 1x1 conv whose last rows are the identity
  (``append_identity``): no concat of full maps;
* the CRU's ``GWC(up) + PWC1(up)`` is one dense conv with PWC1 added into the centre tap
  (``merge_pointwise_into_centre``) when the grouped conv is too narrow to run well on its own
  (``merges_pointwise``);
* the CRU's softmax fuse weighs the two branches directly, ``y1 * s1 + y2 * s2``
  (``softmax_fuse``), instead of concatenating, scaling and splitting maps twice as wide.

Measured with ``benchmarks/profile_block.py`` (ONNX Runtime CPU): ``Sign`` alone cost more than
``Sub`` + ``Ceil`` together, and the copies of the split/concat pairs were among the largest
elementwise costs. Folding the SRU's swap into the squeeze convs (two convs on ``x`` and the gated
part) was measured too and rejected: the extra multiply-accumulates cost more than the passes
they save at every ResNet-50 stage shape.

Gates come in two forms (``gates="exact"|"fast"``, see ``gate_forms``): the exact form keeps the
sigmoid and decides ties exactly as PyTorch; the fast form decides the hard gate on the norm's own
affine output, without the sigmoid, and may decide a tie the other way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import variant_name
from .gate_forms import DEFAULT_GATE_FORM, check_gate_form, fast_decision, float32, step

if TYPE_CHECKING:
    from .reference import CRU, SRU, ScConv

#: A grouped conv with fewer input channels per group than this runs as one dense conv with PWC1
#: folded in. ONNX Runtime's blocked (NCHWc) conv kernels need 16-channel groups; narrower groups
#: fall back to im2col, which at C=64 took as long as the dense conv of twice the MACs does, plus
#: PWC1 and the add (503 vs 694 us per block at 56x56, one thread). Wider groups stay grouped.
MIN_GROUP_WIDTH = 16


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


def _conv_with(weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> nn.Conv2d:
    """A dense stride-1 conv holding the given (detached) weight and bias."""
    out_ch, in_ch, k, _ = weight.shape
    conv = nn.Conv2d(in_ch, out_ch, k, padding=padding, bias=bias is not None)
    conv = conv.to(weight.device, weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def unbiased_correction(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``sqrt((n - 1) / n)``, ``n = group_size·H·W``: turns a biased group std into the seed's unbiased one.

    Written as ``sqrt(1 - Reciprocal(H·W) · (1/group_size))``: the graph computes H·W and four
    scalar ops (the only shape-dependent value of the export form; N, H and W stay dynamic). Not as
    ``Div(1/group_size, H·W)``: onnxslim (0.1.98) folds a constant divided by a shape-derived value
    to 0, which drops the correction from a graph with a dynamic height and width.
    """
    hw = torch.tensor(x.shape[2] * x.shape[3], dtype=x.dtype)
    return torch.sqrt(1.0 - torch.reciprocal(hw) * (1.0 / group_size))


def swap_halves_index(channels: int, device: torch.device | None = None) -> torch.Tensor:
    """Channel indices that swap the two halves: ``x[:, idx] == cat([x_b, x_a])``."""
    half = channels // 2
    return torch.cat([torch.arange(half, channels), torch.arange(half)]).to(device)


def dense_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight of ``conv`` as a dense (groups=1) conv: block-diagonal over the groups."""
    w = conv.weight.detach()
    if conv.groups == 1:
        return w.clone()
    out_per, in_per = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    dense = w.new_zeros(conv.out_channels, conv.in_channels, *w.shape[2:])
    for g in range(conv.groups):
        rows, cols = slice(g * out_per, (g + 1) * out_per), slice(g * in_per, (g + 1) * in_per)
        dense[rows, cols] = w[rows]
    return dense


def merges_pointwise(gwc: nn.Conv2d) -> bool:
    """Whether ``GWC + PWC1`` runs as one dense conv: GWC already dense, or its groups too narrow."""
    return gwc.groups == 1 or gwc.in_channels // gwc.groups < MIN_GROUP_WIDTH


def merge_pointwise_into_centre(gwc: nn.Conv2d, pwc: nn.Conv2d) -> nn.Conv2d:
    """One dense conv computing ``gwc(u) + pwc(u)``: the 1x1 ``pwc`` added into the centre tap.

    ``gwc`` has an odd kernel k with padding k//2 (stride 1), so its centre tap reads the same
    pixel as the 1x1 conv.
    """
    k = gwc.kernel_size[0]
    weight = dense_weight(gwc)
    weight[:, :, k // 2, k // 2] += pwc.weight.detach()[:, :, 0, 0]
    return _conv_with(weight, None if gwc.bias is None else gwc.bias.detach(), k // 2)


def append_identity(pwc: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 conv computing ``cat([pwc(v), v])``: ``pwc``'s rows, then the identity."""
    w = pwc.weight.detach()
    eye = torch.eye(pwc.in_channels, dtype=w.dtype, device=w.device)[:, :, None, None]
    return _conv_with(torch.cat([w, eye]), None, 0)


def softmax_fuse(y1: torch.Tensor, y2: torch.Tensor, channels: int) -> torch.Tensor:
    """``out1 + out2`` of ``out = softmax(avgpool(cat([y1, y2])), dim=1) * cat([y1, y2])``.

    Same values per element as the reference (pooling and softmax see the same 2C numbers),
    without materialising the 2C-channel map: ``y1 * s1 + y2 * s2``. ``channels`` (C, the
    channels of each branch) is passed as a constant so the split stays static in the graph.
    """
    pooled = torch.cat([F.adaptive_avg_pool2d(y1, 1), F.adaptive_avg_pool2d(y2, 1)], dim=1)
    s1, s2 = torch.split(torch.softmax(pooled, dim=1), [channels, channels], dim=1)
    return y1 * s1 + y2 * s2


def channel_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x·weight + bias`` per channel as one ``BatchNormalization`` (mean 0, variance 1, epsilon 0:
    its ``1/sqrt(var + eps)`` is exactly 1), one pass over the map where a ``Mul`` and an ``Add`` take
    two (ONNX Runtime drops the unit ``Mul``/zero ``Add`` of the bare group norm, onnxslim too).
    ``weight`` may be computed in the graph (the seed norm's correction); TensorRT's parser takes a
    computed one as element-wise layers.
    """
    return F.batch_norm(x, torch.zeros_like(bias), torch.ones_like(bias), weight, bias, False, 0.0, 0.0)


def _as_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``; ``x`` itself when it has it (exporters would record a no-op Cast)."""
    return x if x.dtype == dtype else x.to(dtype)


def split_by_mask(x: torch.Tensor, below: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hard gate's ``(x1, x2) = (w1·x, w2·x)`` from its mask ``below = [r < t]`` (0/1 floats)."""
    x2 = below * x  # its complement r >= t keeps the rest
    return x - x2, x2  # x - x2 is exactly x or 0


class ExportSRU(nn.Module):
    """SRU in export form. Construct with :meth:`from_reference`.

    ``gates`` picks how a hard gate decides (``gate_forms``): ``"fast"`` without the sigmoid, on
    the norm's own affine output (``decision_margin``); ``"exact"`` through ``r``, deciding ties as
    PyTorch does. A soft gate always decides through ``r``, which it needs for its weights.
    """

    #: Buffers of the fast gate that stay float32 when the unit is cast to another dtype: its
    #: decision is taken in float32, where the margin scale ``k = 2^-m`` does not underflow.
    FLOAT32_BUFFERS = ("decision_weight", "decision_bias")

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
        gates: str = DEFAULT_GATE_FORM,
    ) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().reshape(-1))
        self.register_buffer("shift", shift.detach().clone().reshape(-1))
        self.channels = int(self.scale.numel())
        # Not part of the state: derived from the channel count alone.
        swap = swap_halves_index(self.channels, self.scale.device)
        self.register_buffer("swap_index", swap, persistent=False)
        self.group_num = group_num
        self.gate_treshold = float(gate_treshold)
        # The threshold exactly as PyTorch uses it against a float32 gate: rounded to float32.
        self._t = float32(gate_treshold)
        self.gate = gate
        self.torch_gn = torch_gn
        # nn.GroupNorm: eps inside the sqrt. Seed norm: eps added to the std, so eps**2 inside
        # the sqrt keeps an all-constant group finite (0 / eps) exactly as the seed does.
        self.eps = float(eps)
        self.norm_eps = eps if torch_gn else eps * eps
        self.origin = origin
        form = check_gate_form(gates)
        self.gates = form if gate == "hard" else "exact"  # the soft gate needs r: one form
        self.margin_scale = 0.0  # k of the fast gate's decision margin; 0 for the exact form
        if self.gates == "fast":
            decision = fast_decision(self.scale, self.shift, self._t)
            # Part of the state: a state dict loaded into this unit must bring its decision along.
            self.register_buffer("decision_weight", decision.weight.to(self.scale.device))
            self.register_buffer("decision_bias", decision.bias.to(self.scale.device))
            self.margin_scale = decision.scale
        # Identities that see the gate tensor and the decision mask the forward uses: forward hooks
        # on them read both (debug exports name these tensors, so that verification can read every
        # decision and feed the reference's decisions back in). They export as nothing. The gate
        # tensor is r in the exact form, the decision margin q in the fast one.
        self.gate_probe = nn.Identity()
        self.mask_probe = nn.Identity()

    @classmethod
    def from_reference(cls, sru: SRU, origin: str = "", gates: str = DEFAULT_GATE_FORM) -> ExportSRU:
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
            gates=gates,
        )

    @property
    def variant(self) -> str:
        return variant_name(self.gate, self.torch_gn)

    def with_gates(self, gates: str) -> ExportSRU:
        """This unit with its gate in the form ``gates`` (itself if it has that form already)."""
        if check_gate_form(gates) == self.gates or self.gate == "soft":
            return self
        return type(self)(
            self.scale,
            self.shift,
            self.group_num,
            self.gate_treshold,
            self.gate,
            self.torch_gn,
            self.eps,
            self.origin,
            gates,
        )

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ExportSRU:
        """As ``nn.Module._apply``, but the fast gate's buffers only follow the device, not the dtype."""
        kept = {name: self._buffers[name] for name in self.FLOAT32_BUFFERS if name in self._buffers}
        super()._apply(fn, recurse)
        for name, before in kept.items():
            self._buffers[name] = before.to(self._buffers[name].device)
        return self

    def _normalised(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``GN(x)·weight + bias``; for the seed norm, ``weight`` times its unbiased correction.

        The affine is one pass (``channel_affine``) after the bare group norm, not the ``Mul`` and
        ``Add`` of a group norm with an affine.
        """
        if not self.torch_gn:
            weight = weight * unbiased_correction(x, self.channels // self.group_num)
        return channel_affine(F.group_norm(x, self.group_num, None, None, self.norm_eps), weight, bias)

    def gate_input(self, x: torch.Tensor) -> torch.Tensor:
        """``z = GN(x) * w``, the sigmoid's input (both forms)."""
        return self._normalised(x, self.scale, self.shift)

    def gate_values(self, x: torch.Tensor) -> torch.Tensor:
        """``r = sigmoid(GN(x) * w)`` computed the export form's way (both forms)."""
        return torch.sigmoid(self.gate_input(x))

    def decision_margin(self, x: torch.Tensor) -> torch.Tensor:
        """The fast gate's ``q = k·(logit(t) - z)``, in float32: ``step(q)`` is its mask ``[r < t]``."""
        return self._normalised(_as_dtype(x, torch.float32), self.decision_weight, self.decision_bias)

    def split_by_gate(self, x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x1, x2) = (w1 * x, w2 * x)`` for gate values ``r``, with float-only masks (exact form).

        The mask — the gate's only decision — passes ``mask_probe``: ``[r < t]`` for the hard gate,
        ``[r > t]`` for the soft one (``gates.GateSpec`` converts between masks and decisions).
        """
        if self.gate == "hard":
            return split_by_mask(x, self.mask_probe(step(self._t - r)))  # [r < t]
        above = self.mask_probe(step(r - self._t))  # [r > t]
        w1 = torch.maximum(r, above)  # 1 where r > t, else r   (0 <= r <= 1)
        return w1 * x, (w1 - above) * x  # w2: 0 where r > t, else r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates == "fast":
            q = self.gate_probe(self.decision_margin(x))
            x1, x2 = split_by_mask(x, self.mask_probe(_as_dtype(step(q), x.dtype)))  # [z < logit(t)]
        else:
            x1, x2 = self.split_by_gate(x, self.gate_probe(self.gate_values(x)))
        return x1 + torch.index_select(x2, 1, self.swap_index)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, variant={self.variant!r}, gate_treshold={self.gate_treshold}, "
            f"gates={self.gates!r}"
        )


class ExportCRU(nn.Module):
    """CRU in export form: constant channel splits, fused convolutions, a narrow softmax fuse.

    ``GWC`` is the group-wise conv, or (``PWC1 is None``) the dense conv computing ``GWC + PWC1``;
    ``Y2`` computes ``cat([PWC2(low), low])``.
    """

    def __init__(self, cru: CRU, origin: str = "") -> None:
        super().__init__()
        self.origin = origin or f"{type(cru).__module__}.{type(cru).__qualname__}"
        self.up_channel = int(cru.up_channel)
        self.low_channel = int(cru.low_channel)
        self.channels = int(cru.GWC.out_channels)
        self.squeeze1 = _conv_copy(cru.squeeze1)
        self.squeeze2 = _conv_copy(cru.squeeze2)
        if merges_pointwise(cru.GWC):
            self.GWC, self.PWC1 = merge_pointwise_into_centre(cru.GWC, cru.PWC1), None
        else:
            self.GWC, self.PWC1 = _conv_copy(cru.GWC), _conv_copy(cru.PWC1)
        self.Y2 = append_identity(cru.PWC2)

    @classmethod
    def from_reference(cls, cru: CRU) -> ExportCRU:
        return cls(cru)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.up_channel, self.low_channel], dim=1)
        up, low = self.squeeze1(up), self.squeeze2(low)
        y1 = self.GWC(up) if self.PWC1 is None else self.GWC(up) + self.PWC1(up)
        return softmax_fuse(y1, self.Y2(low), self.channels)


class ExportScConv(nn.Module):
    """SCConv in export form: ``CRU(SRU(x))`` with both units converted."""

    def __init__(self, sru: ExportSRU, cru: ExportCRU, origin: str = "") -> None:
        super().__init__()
        self.SRU = sru
        self.CRU = cru
        self.origin = origin or "ScConv"

    @classmethod
    def from_reference(cls, block: ScConv, gates: str = DEFAULT_GATE_FORM) -> ExportScConv:
        origin = f"{type(block).__module__}.{type(block).__qualname__}"
        sru = ExportSRU.from_reference(block.SRU, gates=gates)
        return cls(sru, ExportCRU.from_reference(block.CRU), origin)

    @property
    def variant(self) -> str:
        return self.SRU.variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CRU(self.SRU(x))
