"""Loss heads for tests/test_loss_head.py (``file.py:make`` form)."""

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 300


def _model():
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def _batch(batch_size):
    target = torch.randint(0, CLASSES, (batch_size,))
    target[::3] = -100  # ignored rows
    return torch.randn(batch_size, 8), target


def plain(batch_size):
    return _model(), _batch(batch_size), lambda m, b: F.cross_entropy(m(b[0]), b[1])


def weighted_sum(batch_size):
    model = _model()
    model.register_buffer("class_weight", torch.rand(CLASSES))
    return model, _batch(batch_size), lambda m, b: F.cross_entropy(m(b[0]), b[1], weight=m.class_weight,
                                                                  reduction="sum")


def logits_reused(batch_size):
    """The logits are read after log_softmax: the forward may not overwrite them."""
    def loss(m, b):
        logits = m(b[0])
        return F.cross_entropy(logits, b[1]) + 1e-3 * logits.square().mean()
    return _model(), _batch(batch_size), loss


def label_smoothing(batch_size):
    """The log-probabilities are read again after their backward: not fused there."""
    return _model(), _batch(batch_size), lambda m, b: F.cross_entropy(m(b[0]), b[1], label_smoothing=0.1)
