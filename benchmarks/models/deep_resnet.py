"""Deep torchvision ResNets (Bottleneck blocks) for μ-TWO's scaling benchmark.

``make`` is ResNet-152's layout ([3, 8, 36, 3] Bottleneck blocks); ``make_deep`` is the
same network twice as deep ([6, 16, 72, 6]), so it has about twice the activations. Both
train on 64×64 images (1000 classes) so that capturing and profiling them is cheap on a CPU:

    acir-capture benchmarks/models/deep_resnet.py:make -b 4 -o out/mutwo/deep1.acir
    acir-capture benchmarks/models/deep_resnet.py:make_deep -b 4 -o out/mutwo/deep2.acir

(``benchmarks/mutwo_scaling.py --graphs`` does that, profiles them and times μ-TWO on both.)
"""

from __future__ import annotations

IMAGE_SIZE = 64
LAYERS = (3, 8, 36, 3)


def _workload(batch_size: int, layers: tuple[int, ...]):
    import torch
    import torch.nn.functional as F
    from torchvision.models.resnet import Bottleneck, ResNet

    model = ResNet(Bottleneck, list(layers), num_classes=1000)
    batch = (torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE), torch.randint(0, 1000, (batch_size,)))

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    return model, batch, loss_fn


def make(batch_size: int):
    """ResNet-152's depth: Bottleneck layers [3, 8, 36, 3]."""
    return _workload(batch_size, LAYERS)


def make_deep(batch_size: int):
    """Twice as deep: Bottleneck layers [6, 16, 72, 6]."""
    return _workload(batch_size, tuple(2 * n for n in LAYERS))
