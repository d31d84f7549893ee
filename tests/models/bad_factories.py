"""Factories that users get wrong, for the error tests."""

import torch
from torch import nn


def returns_two(batch_size):
    return nn.Linear(2, 2), torch.randn(batch_size, 2)


def not_a_module(batch_size):
    return "model", torch.randn(batch_size, 2), lambda m, b: m(b).sum()


def raises(batch_size):
    raise ValueError("no data here")


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:          # data-dependent control flow: cannot be traced
            h = h * 2
        return h


def untraceable(batch_size):
    return DataDependent(), torch.randn(batch_size, 4), lambda m, b: m(b).sum()


def vector_loss(batch_size):
    return nn.Linear(4, 4), torch.randn(batch_size, 4), lambda m, b: m(b)
