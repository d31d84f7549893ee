"""Small models, each built around one hazard of recomputation (factories in the zoo's
``file.py:make`` form: ``make(batch_size) -> (model, batch, loss_fn)``)."""

import torch
import torch.nn.functional as F
from torch import nn


class StaleSource(nn.Module):
    """``b = tanh(a)`` reads ``a`` before ``a`` is updated in place: a replay of ``b`` from
    ``a`` (kept for the backward of ``a * scale``) would see the new values."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.scale = nn.Parameter(torch.randn(8))
        self.out = nn.Linear(8, 4)

    def forward(self, x):
        a = self.lin(x)
        b = torch.tanh(a)          # saves b; reads a as it is now
        a.mul_(3.0)                # a changes after b was made from it
        c = a * self.scale         # saves the new a: a is an activation
        return self.out(torch.sigmoid(b) + c)


class Views(nn.Module):
    """Activations read in the backward through views: transposes, reshapes and an alias."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(12, 12)
        self.b = nn.Linear(12, 12)
        self.c = nn.Linear(12, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))                      # (B, 3, 12)
        g = torch.tanh(self.b(h)).transpose(1, 2)      # a view of the tanh output
        k = g @ h                                      # bmm saves both views
        return self.c(torch.sigmoid(k.reshape(k.shape[0], -1, 12)).sum(1))


class BatchNormChain(nn.Module):
    """Conv, batch-norm in training mode, in-place relu, twice: running statistics must be
    updated once per step however often the chain is replayed."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.n1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.n2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = F.relu(self.n1(self.c1(x)), inplace=True)
        h = F.relu(self.n2(self.c2(h)), inplace=True)
        return self.fc(h.mean((2, 3)))


def _classify(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def stale_source(batch_size: int):
    return StaleSource(), (torch.randn(batch_size, 8), torch.randint(0, 4, (batch_size,))), _classify


def views(batch_size: int):
    return Views(), (torch.randn(batch_size, 3, 12), torch.randint(0, 4, (batch_size,))), _classify


def batch_norm_chain(batch_size: int):
    return BatchNormChain(), (torch.randn(batch_size, 3, 8, 8), torch.randint(0, 5, (batch_size,))), _classify
