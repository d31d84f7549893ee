"""A user's own model for acir: dropout, batch-norm, an in-place op and a view.

Capture it with:  acir-capture examples/user_model.py:make -b 8 -o user.acir
"""

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        h = self.bn(self.conv(x))
        h.relu_()                      # an in-place op
        h = F.max_pool2d(h, 2)
        h = self.drop(h)               # random: must draw the same mask
        h = h.view(h.shape[0], -1)     # a view
        return self.fc(h)


def make(batch_size: int):
    model = Net()
    batch = (torch.randn(batch_size, 3, 16, 16), torch.randint(0, 10, (batch_size,)))

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    return model, batch, loss_fn
