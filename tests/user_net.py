"""A user's own network holding a pasted copy of the public SCConv code (for whole-pickle tests)."""

import torch
from torch import nn

from public_scconv import HeadScConv, SeedScConv


class UserClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = SeedScConv(16, group_num=4)
        self.block2 = HeadScConv(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))))


class TieNet(nn.Module):
    """A network in which every sample holds exact gate ties, as trained seed-variant networks do.

    Four of the stem's channels are dead (zero weights, negative bias: ReLU gives 0), and they form
    one norm group of each SCConv; with the norm's shift at 0 (the hard gate never trains it),
    that group's gate value is exactly sigmoid(0) = 0.5 = t in every sample.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.block1 = SeedScConv(16, group_num=4)
        self.block2 = HeadScConv(16)
        self.tail = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in self.parameters():  # weights ~ 1/sqrt(fan-in), small biases: features matter
                fan_in = p[0].numel() if p.dim() > 1 else 100
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            self.stem[0].weight[:4] = 0.0
            self.stem[0].bias[:4] = -1.0
            for block in (self.block1, self.block2):
                gn = block.SRU.gn
                scale, shift = (gn.gamma, gn.beta) if hasattr(gn, "gamma") else (gn.weight, gn.bias)
                scale.copy_(1.0 + 0.3 * torch.randn(16, generator=gen).view_as(scale))
                shift.zero_()

    def forward(self, x):
        return self.head(self.tail(self.block2(self.block1(self.stem(x)))))


def tie_net() -> TieNet:
    return TieNet().eval()


class FixedBatchNet(nn.Module):
    """A network that cannot keep a dynamic batch: it reshapes to the batch it was traced with."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.block = SeedScConv(8, group_num=2)

    def forward(self, x):
        return self.block(self.conv(x)).reshape(2, -1).sum(1)


class DataDependentNet(nn.Module):
    """A network whose control flow depends on the data: torch.export cannot capture it."""

    def __init__(self):
        super().__init__()
        self.block = SeedScConv(8, group_num=2)

    def forward(self, x):
        y = self.block(x)
        return y * 2 if y.sum() > 0 else y


def fixed_batch_net() -> FixedBatchNet:
    return FixedBatchNet().eval()


def data_dependent_net() -> DataDependentNet:
    return DataDependentNet().eval()


class Layered(nn.Module):
    """A network whose own parameter names start with 'model.' (as Ultralytics' networks' do)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SeedScConv(16, group_num=4))

    def forward(self, x):
        return self.model(x)
