"""Small MLP and conv stacks whose architecture is given by plain arguments, for property tests.

``make_mlp(widths, batch)`` and ``make_conv(channels, batch)`` return ``(model, batch,
loss_fn)`` with real tensors, built from ``seed``; hypothesis draws the arguments. The
options switch on the things that matter to memory: in-place ReLUs (in-place results
share storage), batch-norm (tuple outputs, some unused), dropout (a mask kept for the
backward), max-pooling (indices) and flattening views. ``make(batch_size)`` is a fixed
mix of both, usable as a model spec: ``acir-capture tests/models/random_stacks.py:make``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def make_mlp(widths: Sequence[int], batch: int, *, inplace: bool = False, norm: bool = False,
             dropout: float = 0.0, classify: bool = True, seed: int = 0):
    """Linear layers ``widths[0] -> widths[1] -> ... -> widths[-1]`` with ReLUs between them."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(widths) - 2:
            if norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=inplace))
            if dropout:
                layers.append(nn.Dropout(dropout))
    model = nn.Sequential(*layers)
    x = torch.randn(batch, widths[0])
    if classify:
        y = torch.randint(0, widths[-1], (batch,))

        def loss_fn(m, b):
            return F.cross_entropy(m(b[0]), b[1])
    else:
        y = torch.randn(batch, widths[-1])

        def loss_fn(m, b):
            return F.mse_loss(m(b[0]), b[1])
    return model, (x, y), loss_fn


class _ConvStack(nn.Module):
    def __init__(self, channels: Sequence[int], image: int, classes: int, inplace: bool, norm: bool,
                 pool: bool) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        size = image
        for a, b in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(a, b, 3, padding=1, bias=not norm))
            if norm:
                blocks.append(nn.BatchNorm2d(b))
            blocks.append(nn.ReLU(inplace=inplace))
            if pool and size >= 2:
                blocks.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(channels[-1] * size * size, classes)

    def forward(self, x):
        h = self.features(x)
        return self.head(h.flatten(1))  # a view


def make_conv(channels: Sequence[int], batch: int, *, image: int = 8, classes: int = 3, inplace: bool = False,
              norm: bool = False, pool: bool = False, seed: int = 0):
    """3x3 convolutions ``channels[0] -> ... -> channels[-1]`` on ``image``-sized inputs, then a linear head."""
    torch.manual_seed(seed)
    model = _ConvStack(channels, image, classes, inplace, norm, pool)
    x = torch.randn(batch, channels[0], image, image)
    y = torch.randint(0, classes, (batch,))

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    return model, (x, y), loss_fn


def make(batch_size: int):
    """A fixed small conv stack with batch-norm, in-place ReLUs and pooling (a model spec)."""
    return make_conv([3, 4, 6], batch_size, inplace=True, norm=True, pool=True)
