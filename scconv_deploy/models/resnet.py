"""ResNet-18/34/50/101 (torchvision's architecture) and their SCConv twins.

``scconv_resnet*`` swap 3×3 convolutions for ``ScConv`` (each keeps the BatchNorm + ReLU that
follows it) wherever the conv keeps its channel count:

* stride 1: Bottleneck's middle 3×3 conv; BasicBlock's second 3×3 conv, and its first one when it
  has stride 1 and as many input as output channels (every block but a stage's first);
* stride 2 (first block of stages 2-4), per ``stride2``: ``"conv"`` (default) keeps the plain
  strided 3×3 conv, ``"scconv_pool"`` uses ``ScConv`` then ``nn.AvgPool2d(2)``. Only Bottleneck's
  strided conv keeps its channels, so ``"scconv_pool"`` is refused for BasicBlock models.

SCConv blocks: resnet18 13, resnet34 29, resnet50 13 (16 with ``"scconv_pool"``), resnet101 30
(33). A plain model and its twin are built by the same code; only the convs listed above differ.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..modules.reference import ScConv
from .registry import register_model, scconv_options

STRIDE2 = ("conv", "scconv_pool")


def init_conv_bn(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming fan-out for every conv (SCConv's too), BN to identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv3x3(
    in_ch: int, out_ch: int, stride: int, scconv: dict[str, Any] | None, stride2: str = "conv"
) -> nn.Module:
    """A 3×3 conv, or ``ScConv(**scconv)`` where it fits (see the module docstring)."""
    if scconv is not None and in_ch == out_ch:
        if stride == 1:
            return ScConv(in_ch, **scconv)
        if stride2 == "scconv_pool":
            return nn.Sequential(ScConv(in_ch, **scconv), nn.AvgPool2d(stride))
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN(-ReLU) layers and a residual connection."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        downsample: nn.Module | None,
        scconv: dict[str, Any] | None,
        stride2: str,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, width, stride, scconv, stride2)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1, scconv)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carries the stride), 1×1 expand by 4, and a residual connection."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        downsample: nn.Module | None,
        scconv: dict[str, Any] | None,
        stride2: str,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, scconv, stride2)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """7×7 stem + max pool, four stages (widths 64-512, stride 2 from the second), pool, linear.

    ``scconv=None`` builds the plain network; a dict of ``ScConv`` keywords builds the SCConv twin.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        scconv: dict[str, Any] | None = None,
        stride2: str = "conv",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
            stride = 1 if i == 1 else 2
            out_ch = width * block.expansion
            downsample = None
            if stride != 1 or in_ch != out_ch:
                downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
                )
            blocks = [block(in_ch, width, stride, downsample, scconv, stride2)]
            blocks += [block(out_ch, width, 1, None, scconv, stride2) for _ in range(depth - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _create_resnet(
    arch: str,
    with_scconv: bool,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    stride2: str = "conv",
    **options: Any,
) -> ResNet:
    name = f"scconv_{arch}" if with_scconv else arch
    scconv = scconv_options(name, with_scconv, options)
    cfg = _CFGS[arch]
    if stride2 not in STRIDE2:
        raise ValueError(f"{name}: stride2={stride2!r} is unknown; use one of {STRIDE2}")
    if stride2 != "conv" and scconv is None:
        raise TypeError(f"{name} has no SCConv blocks: stride2= applies to scconv_{arch} only")
    if stride2 == "scconv_pool" and cfg["block"] is BasicBlock:
        raise ValueError(
            f"{name}: stride2='scconv_pool' needs stride-2 convs that keep their channels, and "
            f"BasicBlock's double them; use a Bottleneck model (scconv_resnet50, scconv_resnet101)"
        )
    return ResNet(cfg["block"], cfg["layers"], num_classes, in_chans, scconv, stride2)


_CFGS: dict[str, dict[str, Any]] = {
    "resnet18": {"block": BasicBlock, "layers": (2, 2, 2, 2)},
    "resnet34": {"block": BasicBlock, "layers": (3, 4, 6, 3)},
    "resnet50": {"block": Bottleneck, "layers": (3, 4, 6, 3)},
    "resnet101": {"block": Bottleneck, "layers": (3, 4, 23, 3)},
}


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (11.7M parameters at 1000 classes)."""
    return _create_resnet("resnet18", False, **kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (21.8M parameters)."""
    return _create_resnet("resnet34", False, **kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50, stride on the 3×3 conv (torchvision's v1.5; 25.6M parameters)."""
    return _create_resnet("resnet50", False, **kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (44.5M parameters)."""
    return _create_resnet("resnet101", False, **kwargs)


@register_model
def scconv_resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 with 13 SCConv blocks."""
    return _create_resnet("resnet18", True, **kwargs)


@register_model
def scconv_resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 with 29 SCConv blocks."""
    return _create_resnet("resnet34", True, **kwargs)


@register_model
def scconv_resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 with SCConv in the 13 stride-1 Bottlenecks (16 with ``stride2="scconv_pool"``)."""
    return _create_resnet("resnet50", True, **kwargs)


@register_model
def scconv_resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 with SCConv in the 30 stride-1 Bottlenecks (33 with ``stride2="scconv_pool"``)."""
    return _create_resnet("resnet101", True, **kwargs)
