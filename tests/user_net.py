"""A user's own network holding a pasted copy of the public SCConv code (for whole-pickle tests)."""

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


class Layered(nn.Module):
    """A network whose own parameter names start with 'model.' (as Ultralytics' networks' do)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SeedScConv(16, group_num=4))

    def forward(self, x):
        return self.model(x)
