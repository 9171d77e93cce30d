"""A small CNN for 32×32 inputs (``scconv_cnn``, 0.13M parameters) and its plain twin ``cnn``.

conv-BN-ReLU stem (``width`` channels), then three stages at 32², 16² and 8² with ``width``,
``2·width`` and ``4·width`` channels: each one 3×3 (SCConv in the twin)-BN-ReLU layer, the
stages joined by stride-2 3×3 conv-BN-ReLU layers; global average pool, linear. Sized to train
in minutes on a CPU (e.g. scikit-learn's digits upscaled to 32×32, ``in_chans=1``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..modules.reference import ScConv
from .registry import register_model, scconv_options


def _conv_bn_relu(
    in_ch: int, out_ch: int, stride: int, scconv: dict[str, Any] | None = None
) -> nn.Sequential:
    """3×3 conv (``ScConv(**scconv)`` if given; it keeps the channels and stride 1), BN, ReLU."""
    conv = (
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        if scconv is None
        else ScConv(in_ch, **scconv)
    )
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class CNN(nn.Module):
    """Stem, three stages (one SCConv or 3×3 conv layer each), global pool, linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 32,
        scconv: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            _conv_bn_relu(in_chans, w1, 1),
            _conv_bn_relu(w1, w1, 1, scconv),
            _conv_bn_relu(w1, w2, 2),
            _conv_bn_relu(w2, w2, 1, scconv),
            _conv_bn_relu(w2, w3, 2),
            _conv_bn_relu(w3, w3, 1, scconv),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def _create_cnn(
    arch: str,
    with_scconv: bool,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    width: int = 32,
    **options: Any,
) -> CNN:
    scconv = scconv_options(f"scconv_{arch}" if with_scconv else arch, with_scconv, options)
    return CNN(num_classes=num_classes, in_chans=in_chans, width=width, scconv=scconv)


@register_model
def cnn(**kwargs: Any) -> CNN:
    """The small CNN with plain 3×3 convs (0.29M parameters)."""
    return _create_cnn("cnn", False, **kwargs)


@register_model
def scconv_cnn(**kwargs: Any) -> CNN:
    """The small CNN with three SCConv layers (0.13M parameters)."""
    return _create_cnn("cnn", True, **kwargs)
