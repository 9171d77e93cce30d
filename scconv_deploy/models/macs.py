"""Parameter and multiply-accumulate (MAC) counts of a model, measured by one forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` for one forward pass of ``model`` on an input of ``input_shape``.

    MACs are counted with forward hooks, for the whole input (batch included), by convention:

    * ``nn.Conv2d``: output elements × in_channels / groups × kh × kw;
    * ``nn.Linear``: output elements × in_features (out_features × in_features per sample).

    Biases, norms, activations, pooling and SCConv's elementwise work (gating, softmax, splits)
    are not counted; SCConv's own convolutions are. A module called twice is counted twice. The
    pass runs in eval mode under ``torch.no_grad`` on zeros; ``model``'s mode is restored.
    """
    macs = 0

    def conv_hook(m: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    ref = next(model.parameters(), None)
    x = torch.zeros(tuple(input_shape), device=ref.device if ref is not None else None)
    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in training.items():
            m.train(mode)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": macs}
