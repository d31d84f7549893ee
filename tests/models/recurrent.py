"""Recurrent models for the capture-and-run tests: an LSTM and a GRU, tiny.

On the CPU an ``nn.LSTM`` runs as one oneDNN kernel per layer (``aten.mkldnn_rnn_layer``),
whose workspace exists only when grad mode is on, and an ``nn.GRU`` decomposes into cell
ops; the variants cover both directions, dropout between layers, projections (which oneDNN
does not take) and the cells stepped by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURES, HIDDEN, CLASSES, STEPS = 8, 16, 4, 5


class Classifier(nn.Module):
    """A recurrent layer, then a linear head on the last time step."""

    def __init__(self, rnn: nn.Module, out_features: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(out_features, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class Cells(nn.Module):
    """An LSTMCell and a GRUCell stepped over the sequence by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(FEATURES, HIDDEN)
        self.gru = nn.GRUCell(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], HIDDEN)
        g = x.new_zeros(x.shape[0], HIDDEN)
        for t in range(x.shape[1]):
            h, c = self.lstm(x[:, t], (h, c))
            g = self.gru(h, g)
        return self.head(g)


def _loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def _workload(model: nn.Module, batch_size: int):
    batch = (torch.randn(batch_size, STEPS, FEATURES), torch.randint(0, CLASSES, (batch_size,)))
    return model, batch, _loss


def lstm(batch_size: int):
    """A bidirectional two-layer LSTM, batch first, with dropout between the layers (oneDNN's kernel)."""
    rnn = nn.LSTM(FEATURES, HIDDEN, num_layers=2, batch_first=True, bidirectional=True, dropout=0.25)
    return _workload(Classifier(rnn, 2 * HIDDEN), batch_size)


def lstm_projected(batch_size: int):
    """An LSTM with projections, which oneDNN does not take: PyTorch's own cell ops."""
    rnn = nn.LSTM(FEATURES, HIDDEN, num_layers=2, batch_first=True, proj_size=8)
    return _workload(Classifier(rnn, 8), batch_size)


def gru(batch_size: int):
    """A bidirectional two-layer GRU."""
    return _workload(Classifier(nn.GRU(FEATURES, HIDDEN, num_layers=2, batch_first=True, bidirectional=True),
                                2 * HIDDEN), batch_size)


def cells(batch_size: int):
    """LSTMCell and GRUCell, one time step at a time."""
    return _workload(Cells(), batch_size)
