"""WideResNet-28-10 for 32×32 inputs (CIFAR) and its SCConv twin.

Pre-activation basic blocks (BN-ReLU-conv ×2), widths 160/320/640, four blocks per stage,
36.5M parameters at 10 classes. ``scconv_wrn_28_10`` replaces the second 3×3 conv of each block
(always stride 1, channels kept) with ``ScConv``: 12 SCConv blocks.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..modules.reference import ScConv
from .registry import register_model, scconv_options
from .resnet import init_conv_bn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3(stride)-BN-ReLU-dropout-conv3×3, plus the input (1×1 conv when shapes change)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, dropout: float, scconv: dict[str, Any] | None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = (
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
            if scconv is None
            else ScConv(out_ch, **scconv)
        )
        self.shortcut = None if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        # As in the reference WRN code, a projection shortcut takes the pre-activated input.
        identity = x if self.shortcut is None else self.shortcut(act)
        out = self.dropout(self.relu2(self.bn2(self.conv1(act))))
        return self.conv2(out) + identity


class WideResNet(nn.Module):
    """3×3 stem (16 channels), three stages of pre-activation blocks, BN-ReLU, global pool, linear."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int = 10,
        in_chans: int = 3,
        dropout: float = 0.0,
        scconv: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth={depth} must be 6n + 4")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        in_ch = 16
        for i, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2), strict=True), start=1):
            out_ch = width * widen
            blocks = [PreActBlock(in_ch, out_ch, stride, dropout, scconv)]
            blocks += [PreActBlock(out_ch, out_ch, 1, dropout, scconv) for _ in range(n - 1)]
            self.add_module(f"block{i}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.bn = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn(x))).flatten(1))


def _create_wrn(
    arch: str,
    with_scconv: bool,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    dropout: float = 0.0,
    **options: Any,
) -> WideResNet:
    scconv = scconv_options(f"scconv_{arch}" if with_scconv else arch, with_scconv, options)
    return WideResNet(
        **_CFGS[arch], num_classes=num_classes, in_chans=in_chans, dropout=dropout, scconv=scconv
    )


_CFGS: dict[str, dict[str, int]] = {
    "wrn_28_10": {"depth": 28, "widen": 10},
}


@register_model
def wrn_28_10(**kwargs: Any) -> WideResNet:
    """WideResNet-28-10 for 32×32 inputs (36.5M parameters)."""
    return _create_wrn("wrn_28_10", False, **kwargs)


@register_model
def scconv_wrn_28_10(**kwargs: Any) -> WideResNet:
    """WideResNet-28-10 with SCConv as each block's second conv (12 blocks)."""
    return _create_wrn("wrn_28_10", True, **kwargs)
