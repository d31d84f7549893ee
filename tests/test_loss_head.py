"""The in-place loss head (acir.analysis.loss_head, acir.ir.acir_ops): the same bits, less memory.

The kernel is checked against the aten pair it replaces; the fusion on real captures is
checked by running the fused graph against eager PyTorch, and its memory by the simulator
and the tracker. Where a tensor is still read later, nothing is fused."""

from __future__ import annotations

import copy
import os

import pytest
from conftest import ROOT

from acir.analysis.loss_head import FUSED_BACKWARD, fuse, fused_view

MODELS = os.path.join(ROOT, "tests", "models", "loss_heads.py")


@pytest.mark.parametrize("rows,classes", [(5, 7), (63, 1000), (40, 9000)])
@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_is_the_aten_pair_bit_for_bit(rows, classes, reduction, weighted):
    import torch

    from acir.ir.ops import resolve_op

    fused = resolve_op(FUSED_BACKWARD)
    g = torch.Generator().manual_seed(rows * classes + reduction)
    out = torch._log_softmax(torch.randn(rows, classes, generator=g) * 4, 1, False)
    target = torch.randint(0, classes, (rows,), generator=g)
    target[::4] = -100
    weight = torch.rand(classes, generator=g) if weighted else None
    grad = torch.rand(rows if reduction == 0 else (), generator=g)
    total = torch.rand((), generator=g) + 1
    dense = torch.ops.aten.nll_loss_backward(grad, out, target, weight, reduction, -100, total)
    want = torch.ops.aten._log_softmax_backward_data(dense, out, 1, torch.float32)
    mine = out.clone()
    got = fused(mine, grad, target, weight, reduction, -100, total, 1)
    assert got is mine
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


def _capture(spec: str, batch: int = 96):
    from acir.api import CaptureOptions, capture

    return capture(CaptureOptions(spec, batch))


def _check(module):
    from acir.frontend.rebuild import rebuild
    from acir.runtime.check import check_against_eager
    from acir.runtime.lower import BoundStep

    prov = module.header.provenance
    return check_against_eager(lambda: rebuild(prov), lambda m, o, b: BoundStep(module, m, o)(b), 1234)


def _peak(graph) -> int:
    from acir.analysis.simulator import simulate, storage_lives

    return simulate(graph, storage_lives(graph)).peak_bytes


@pytest.mark.parametrize("name,forward,backward", [("plain", 1, 1), ("weighted_sum", 1, 1),
                                                   ("logits_reused", 0, 1), ("label_smoothing", 1, 0)])
def test_fused_steps_are_bit_identical(name, forward, backward):
    from acir.frontend.rebuild import rebuild
    from acir.ir.verify import problems
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    m = _capture(f"{MODELS}:{name}")
    before = _peak(m.graph)
    view, stats = fused_view(m.graph)
    assert (stats.forward, stats.backward) == (forward, backward)
    assert view is not m.graph and _peak(m.graph) == before  # the module's own graph is left alone
    fused = copy.deepcopy(m)
    fused.graph = view
    assert problems(fused) == []
    assert _check(fused).ok
    # a fully fused head's peak loses rows x classes tensors (the others peak where the fusion does not
    # reach: the square term's backward, label smoothing's), and the tracker agrees with the simulator
    assert _peak(view) < before if name in ("plain", "weighted_sum") else _peak(view) <= before
    model, opt, _, batch = rebuild(fused.header.provenance)
    step = BoundStep(fused, model, opt)
    assert measure_peak(lambda: step(batch), step.inputs(batch)) == _peak(view)


def test_fusion_is_idempotent_and_optional():
    m = _capture(f"{MODELS}:plain")
    g = copy.deepcopy(m.graph)
    assert fuse(g).total == 2
    assert fuse(g).total == 0
    assert fused_view(g)[0] is g


def test_a_tensor_a_factorys_loss_closes_over_is_built_for_real_and_read_once_as_a_constant(tmp_path):
    # The factory runs again for acir-run, so the tensor's value is fixed: it is stored in the artifact.
    from acir.ir.graph import InputKind

    path = tmp_path / "closure.py"
    path.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
                    "def make(batch_size):\n    w = torch.rand(4)\n"
                    "    batch = (torch.randn(batch_size, 3), torch.randint(0, 4, (batch_size,)))\n"
                    "    return nn.Linear(3, 4), batch, lambda m, b: F.cross_entropy(m(b[0]), b[1], weight=w)\n")
    module = _capture(f"{path}:make", 4)
    assert "model built for real" in module.header.producer
    constants = [i for i in module.graph.inputs if i.kind is InputKind.CONSTANT]
    assert len(constants) == 1 and len(constants[0].data) == 4 * 4  # read by the forward and the backward
    assert _check(module).ok
