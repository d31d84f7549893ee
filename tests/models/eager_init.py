"""Factories that cannot run under fake tensors while they build the model, for the capture tests.

Each works eagerly; under ``FakeTensorMode`` each raises while building (``.item()`` on a
weight, ``.numpy()``), loses data the step reads (a plain tensor attribute) or makes
parameters under a second fake mode (a deep copy), so capture builds it for real and turns
it into fake tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ItemInit(nn.Module):
    """Initialised like torchvision's ConvNeXt or ViT: a truncated normal, then a check on a
    value read with ``.item()``; a batch norm (buffers) and a small tensor attribute that is
    neither a parameter nor a buffer (the step reads it as a constant)."""

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16, bias=False)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 8, bias=False)
        nn.init.trunc_normal_(self.embed.weight, std=0.5)
        if self.embed.weight.abs().max().item() > 1.0:  # data-dependent: fails on fake tensors
            with torch.no_grad():
                self.embed.weight.clamp_(-1.0, 1.0)
        if tied:
            self.out.weight = nn.Parameter(self.embed.weight.t().contiguous())
            self.back = nn.Linear(8, 16, bias=False)
            self.back.weight = self.embed.weight  # the same parameter in two modules
        self.shift = torch.linspace(-0.5, 0.5, 16)  # a plain attribute: a constant of the step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.embed(x)) + self.shift)
        if hasattr(self, "back"):
            h = h + self.back(x)
        return self.out(h)


class NumpyInit(nn.Module):
    """Weights made with NumPy from a tensor (``.numpy()`` needs data)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        scale = torch.rand(8).numpy().max()
        with torch.no_grad():
            self.fc.weight.mul_(float(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class PlainAttribute(nn.Module):
    """Builds under fake tensors, but holds a tensor that is neither a parameter nor a buffer and
    reads its data in the forward: a fake build loses that data."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.shift = torch.randn(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.shift


def _regression(model: nn.Module, batch_size: int):
    batch = (torch.randn(batch_size, 8), torch.randn(batch_size, 8))

    def loss_fn(m, b):
        x, y = b
        return F.mse_loss(m(x), y)

    return model, batch, loss_fn


def item_init(batch_size: int):
    return _regression(ItemInit(), batch_size)


def tied_item_init(batch_size: int):
    return _regression(ItemInit(tied=True), batch_size)


def numpy_init(batch_size: int):
    return _regression(NumpyInit(), batch_size)


def plain_attribute(batch_size: int):
    return _regression(PlainAttribute(), batch_size)


class CopiedLayers(nn.Module):
    """``nn.TransformerEncoder`` deep-copies its layer while it is built: under fake tensors the
    copies' parameters belong to another fake mode than the rest of the model."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.view(x.shape[0], 1, 8)).view(x.shape[0], 8)


def copied_layers(batch_size: int):
    return _regression(CopiedLayers(), batch_size)


def no_parameters(batch_size: int):
    """A model with nothing to train."""
    x = torch.randn(batch_size, 4, requires_grad=True)
    return nn.ReLU(), x, lambda m, b: m(b).sum()
