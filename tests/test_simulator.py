"""The memory simulator: hand-built graphs with known answers, and simulated == measured on real runs."""

from __future__ import annotations

import copy
import importlib.util
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_fixtures import GraphBuilder, big_module, small_module

from acir.analysis.simulator import simulate, storage_lives
from acir.ir.graph import InputKind, Region, Role

F, B, O = Region.FORWARD, Region.BACKWARD, Region.OPTIMIZER
HERE = os.path.dirname(os.path.abspath(__file__))


def _stacks():
    spec = importlib.util.spec_from_file_location("random_stacks", os.path.join(HERE, "models", "random_stacks.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _life(graph, lives, value_ref):
    sid = graph.values[value_ref.id].storage
    return next(life for life in lives if life.storage == sid)


# ---------------------------------------------------------------------------
# hand-built graphs: every number below is worked out by hand


def test_views_cost_nothing_and_keep_their_base_alive():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))                  # 16 B, persistent
    a = b.new((10,))                                         # 40 B
    b.node("aten.neg.default", [x], a)
    av = b.view(a, (5,), (2,))
    b.node("aten.slice.Tensor", [a, 0, 0, 10, 2], av)        # a view: +0
    c = b.new((5,))                                          # 20 B
    b.node("aten.neg.default", [av], c)                      # reads a's storage through the view
    d = b.new(())                                            # 4 B
    b.node("aten.sum.default", [c], d)
    b.output(d)
    g = b.graph
    t = simulate(g)
    assert t.persistent_bytes == 16
    assert t.live == [56, 56, 76, 40]
    assert t.after == [56, 56, 36, 20]   # a dies after its view's last use (node 2), c after node 3
    assert (t.peak_bytes, t.peak_rank) == (76, 2)
    assert _life(g, storage_lives(g), a).last_use == 2


def test_in_place_results_cost_nothing():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    a = b.new((4,))
    b.node("aten.neg.default", [x], a)
    a2 = b.alias(a)
    b.node("aten.relu_.default", [a], a2)
    c = b.new(())
    b.node("aten.sum.default", [a2], c)
    b.output(c)
    t = simulate(b.graph)
    assert t.live == [32, 32, 36]
    assert t.after == [32, 32, 20]


def test_in_place_update_of_an_input_is_free_and_never_released():
    b = GraphBuilder()
    w = b.input("w", InputKind.PARAMETER, (8,))              # 32 B
    g = b.new((8,), role=Role.GRAD)
    b.node("aten.ones_like.default", [w], g, B)
    b.node("aten.add_.Tensor", [w, g], b.alias(w), O)
    t = simulate(b.graph)
    assert t.live == [64, 64] and t.after == [64, 32]
    lives = storage_lives(b.graph)
    assert (lives[0].defined, lives[0].last_use) == (-1, 2)


def test_unused_output_is_freed_right_after_its_node():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    dead = b.new((100,))
    b.node("aten.neg.default", [x], dead)                    # nothing reads it
    y = b.new((4,))
    b.node("aten.neg.default", [x], y)
    b.output(y)
    g = b.graph
    t = simulate(g)
    assert t.live == [416, 32] and t.after == [16, 32]
    life = _life(g, storage_lives(g), dead)
    assert (life.defined, life.last_use) == (0, 0)


def test_multi_output_with_none_and_an_unused_element():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    used, unused = b.new((4,)), b.new((8,))
    b.node("aten.native_batch_norm.default", [x], [used, None, unused])
    y = b.new((4,))
    b.node("aten.neg.default", [used], y)
    z = b.new(())
    b.node("aten.sum.default", [y], z)
    b.output(z)
    t = simulate(b.graph)
    assert t.live == [16 + 16 + 32, 16 + 16 + 16, 16 + 16 + 4]
    assert t.after == [32, 32, 20]  # the unused element dies with the tuple, right after node 0


def test_graph_outputs_live_to_the_end():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    loss = b.new(())
    b.node("aten.sum.default", [x], loss)
    other = b.new((4,))
    b.node("aten.neg.default", [x], other)
    b.output(loss)
    g = b.graph
    t = simulate(g)
    assert t.live == [20, 36] and t.after == [20, 20]
    assert _life(g, storage_lives(g), loss).last_use == len(g.nodes)


def test_activation_and_its_inactive_time():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    a = b.new((4,))
    b.node("aten.relu.default", [x], a)                      # rank 0: defines a
    h = b.new((4,))
    b.node("aten.neg.default", [a], h)                       # rank 1: last forward use
    h2 = b.new((4,))
    b.node("aten.neg.default", [h], h2)                      # rank 2
    loss = b.new(())
    b.node("aten.sum.default", [h2], loss)                   # rank 3
    gl = b.new((), role=Role.GRAD)
    b.node("aten.ones_like.default", [loss], gl, B)          # rank 4
    gx = b.new((4,), role=Role.GRAD)
    b.node("aten.threshold_backward.default", [gl, a, 0], gx, B)   # rank 5: first backward use
    b.node("aten.mul.Tensor", [gx, a], b.new((4,), role=Role.GRAD), B)  # rank 6: last backward use
    b.output(loss)
    g = b.graph
    run_s = {n.id: 0.001 * (n.id + 1) for n in g.nodes}
    life = _life(g, storage_lives(g, run_s), a)
    assert (life.defined, life.last_use, life.last_fw_use, life.first_bw_use, life.last_bw_use) == (0, 6, 1, 5, 6)
    assert life.activation
    assert life.inactive_s == pytest.approx(0.003 + 0.004 + 0.005)  # ranks 2, 3, 4
    assert _life(g, storage_lives(g), a).inactive_s == 0.0           # no run times: no inactive time
    h_life = _life(g, storage_lives(g, run_s), h)
    assert not h_life.activation and h_life.inactive_s == 0.0        # never read in the backward
    assert not _life(g, storage_lives(g, run_s), gx).activation     # made in the backward


def test_activation_never_read_in_the_forward_is_idle_from_its_definition():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    saved = b.new((4,))
    b.node("aten.neg.default", [x], saved)                   # rank 0, a saved tensor only
    loss = b.new(())
    b.node("aten.sum.default", [x], loss)                    # rank 1
    b.node("aten.mul.Tensor", [saved, 2], b.new((4,), role=Role.GRAD), B)  # rank 2
    b.output(loss)
    life = _life(b.graph, storage_lives(b.graph, {0: 1.0, 1: 2.0, 2: 4.0}), saved)
    assert life.activation and life.last_fw_use == -1 and life.inactive_s == 2.0


def test_no_nodes():
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    b.output(x)
    t = simulate(b.graph)
    assert (t.live, t.after, t.peak_bytes, t.peak_rank, t.persistent_bytes) == ([], [], 16, -1, 16)
    assert t.peak_by_role() == {Role.INPUT: 16}


def test_roles_split_the_timeline():
    m = small_module()
    t = simulate(m.graph)
    for r, total in enumerate(t.live):
        assert sum(series[r] for series in t.by_role.values()) == total
    split = t.peak_by_role()
    assert sum(split.values()) == t.peak_bytes
    assert split[Role.PARAM] == 128 + 16 and split[Role.OPT_STATE] == 2 * 128
    assert t.peak_rank == t.live.index(max(t.live))


def test_simulates_15k_nodes():
    # its speed is a benchmark's business (the brief: no timed tests; a loaded CI machine fails them)
    m = big_module()
    t = simulate(m.graph)
    assert len(t.live) == 15003 and t.peak_bytes >= t.persistent_bytes


# ---------------------------------------------------------------------------
# simulated == measured: run the lowered step under the dispatch-level tracker


def _measured_timeline(module, model, opt, batch) -> tuple[int, list[int]]:
    """(peak, live bytes after each op returns) of one lowered step on real tensors."""
    import torch

    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import live_storage_tracker, measure_peak

    step = BoundStep(module, model, opt)
    args = step.inputs(batch)
    tracker = live_storage_tracker()
    tracker.register_all(args)
    seen: list[int] = []
    tracker.after_op = lambda func, current: seen.append(current)
    with tracker, torch.no_grad():
        step.gm(*args)
    # and the public entry point, as acir-run calls it (a fresh copy: the step updates in place)
    model2, opt2 = copy.deepcopy((model, opt))
    step2 = BoundStep(module, model2, opt2, step.gm)
    peak = measure_peak(lambda: step2(batch), step2.inputs(batch))
    assert peak == tracker.peak
    return peak, seen


def _assert_exact(module, model, opt, batch) -> None:
    peak, seen = _measured_timeline(module, model, opt, batch)
    t = simulate(module.graph)
    assert t.peak_bytes == peak, f"simulated {t.peak_bytes} B, measured {peak} B"
    assert t.live == seen  # every node, not just the peak


def _capture_real(model, batch, loss_fn, optimizer: str):
    """Capture the step from real tensors; returns (module, model, opt) copies untouched by tracing."""
    import torch

    from acir.frontend.optim import make_optimizer, optimizer_options
    from acir.frontend.step import module_from_workload
    from acir.ir.graph import Provenance

    opt = make_optimizer(optimizer, model.parameters(), 1e-2)
    run_model, run_opt = copy.deepcopy((model, opt))
    prov = Provenance(model="<tests/models/random_stacks.py>", batch_size=len(batch[0]), optimizer=optimizer,
                      optimizer_options=optimizer_options(opt), torch_version=torch.__version__)
    return module_from_workload(model, opt, loss_fn, batch, prov), run_model, run_opt


_WIDTH = st.integers(1, 6)


@st.composite
def _workloads(draw):
    stacks = _stacks()
    batch = draw(st.integers(1, 3))
    opts = dict(inplace=draw(st.booleans()), norm=draw(st.booleans()) and batch > 1, seed=draw(st.integers(0, 9)))
    if draw(st.booleans()):
        widths = draw(st.lists(_WIDTH, min_size=2, max_size=4))
        wl = stacks.make_mlp(widths, batch, dropout=draw(st.sampled_from([0.0, 0.5])), **opts)
    else:
        channels = draw(st.lists(st.integers(1, 4), min_size=2, max_size=3))
        wl = stacks.make_conv(channels, batch, image=draw(st.sampled_from([2, 4, 5])), pool=draw(st.booleans()),
                              **opts)
    return wl, draw(st.sampled_from(["adam", "sgd"]))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_workloads())
def test_simulated_peak_equals_measured_on_random_stacks(workload):
    import torch

    (model, batch, loss_fn), optimizer = workload
    module, model, opt = _capture_real(model, batch, loss_fn, optimizer)
    torch.manual_seed(0)
    _assert_exact(module, model, opt, batch)


@pytest.mark.parametrize("name", ["mlp", "resnet18", "bert-tiny", "gpt2-tiny", "user"])
def test_simulated_peak_equals_measured_on_tiny_models(captured, name):
    import torch

    from acir.frontend.rebuild import rebuild

    module = captured(name)
    model, opt, _, batch = rebuild(module.header.provenance)
    torch.manual_seed(0)
    _assert_exact(module, model, opt, batch)


@pytest.mark.xfail(strict=True, reason="capture records the meta kernel's storage size (4 B) for a reduced "
                   "mse_loss, but torch's CPU kernel returns a 0-dim tensor whose storage is the whole unreduced "
                   "buffer (numel(input) * 4 B); likewise smooth_l1_loss, binary_cross_entropy, soft_margin_loss")
def test_reduced_mse_loss_storage_matches_the_cpu_kernel():
    import torch

    model, batch, loss_fn = _stacks().make_mlp([3, 2], 2, classify=False)
    module, model, opt = _capture_real(model, batch, loss_fn, "sgd")
    torch.manual_seed(0)
    _assert_exact(module, model, opt, batch)
