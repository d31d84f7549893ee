"""Capture: roles, regions, storages and determinism of the captured training step."""

from __future__ import annotations

import pytest

from acir.ir.graph import InputKind, Region, Role
from acir.ir.serde import dumps, loads
from acir.ir.verify import verify


@pytest.mark.parametrize("name", ["mlp", "resnet18", "bert-tiny", "gpt2-tiny", "user"])
def test_capture_verifies_and_round_trips(captured, name):
    m = captured(name)
    verify(m)
    data = dumps(m)
    assert dumps(loads(data)) == data


def test_capture_is_deterministic(captured):
    from acir.api import CaptureOptions, capture

    again = capture(CaptureOptions("resnet18", 2, 0, 32))
    assert dumps(again) == dumps(captured("resnet18"))


def test_regions_are_ordered_and_all_present(captured):
    m = captured("resnet18")
    regions = [n.region for n in m.graph.nodes]
    first_non_forward = regions.index(Region.BACKWARD)
    assert all(r is Region.FORWARD for r in regions[:first_non_forward])
    assert Region.FORWARD not in regions[first_non_forward:]
    assert {Region.FORWARD, Region.BACKWARD, Region.OPTIMIZER} <= set(regions)
    # interleaved by default: parameters are updated inside the backward
    assert m.header.pipeline == ["interleave-optimizer"] and m.header.revision == 1
    last_bw = max(i for i, r in enumerate(regions) if r is Region.BACKWARD)
    assert any(r is Region.OPTIMIZER for r in regions[:last_bw])


def test_eager_schedule_keeps_pytorch_order():
    from acir.api import CaptureOptions, capture

    m = capture(CaptureOptions("mlp", 2, schedule="eager"))
    regions = [n.region.value for n in m.graph.nodes]
    assert regions == sorted(regions) and m.header.pipeline == []


def test_interleaving_lowers_the_peak(captured):
    from acir.analysis.simulator import simulate
    from acir.api import CaptureOptions, capture

    eager = capture(CaptureOptions("resnet18", 2, 0, 32, schedule="eager"))
    assert simulate(captured("resnet18").graph).peak_bytes < simulate(eager.graph).peak_bytes
    # the first backward node seeds the loss gradient
    first_bw = next(n for n in eager.graph.nodes if n.region is Region.BACKWARD)
    assert first_bw.op == "aten.ones_like.default"


def test_inputs_name_what_they_are(captured):
    m = captured("resnet18")
    kinds = {}
    for i in m.graph.inputs:
        kinds.setdefault(i.kind, []).append(i.name)
    assert "conv1.weight" in kinds[InputKind.PARAMETER]
    assert "bn1.running_mean" in kinds[InputKind.MODULE_BUFFER]
    assert "conv1.weight:exp_avg" in kinds[InputKind.OPTIMIZER_STATE]
    assert kinds[InputKind.BATCH] == ["batch[0]", "batch[1]"]


def test_roles(captured):
    m = captured("resnet18")
    g = m.graph
    roles = {v.role for v in g.values.values()}
    assert {Role.PARAM, Role.BUFFER, Role.INPUT, Role.ACTIVATION, Role.GRAD, Role.OPT_STATE, Role.OTHER} <= roles
    # a storage's role is decided where it is created: activations in the forward, gradients in the backward
    created: dict[int, Region] = {}
    for n in g.nodes:
        for vid in n.output_ids():
            created.setdefault(g.values[vid].storage, n.region)
    for v in g.values.values():
        if v.role is Role.ACTIVATION:
            assert created[v.storage] is Region.FORWARD
        if v.role is Role.GRAD:
            assert created[v.storage] is Region.BACKWARD
    # one gradient storage per parameter
    n_params = sum(1 for i in g.inputs if i.kind is InputKind.PARAMETER)
    assert len({v.storage for v in g.values.values() if v.role is Role.GRAD}) == n_params


def test_views_and_inplace_share_storage(captured):
    g = captured("user").graph
    by_op = {}
    for n in g.nodes:
        by_op.setdefault(n.op, []).append(n)
    relu = by_op["aten.relu_.default"][0]
    (src,) = [a.id for a in relu.args[:1]]
    assert g.values[relu.output_ids()[0]].storage == g.values[src].storage
    view = by_op["aten.view.default"][0]
    assert g.values[view.output_ids()[0]].storage == g.values[view.args[0].id].storage


def test_tied_weights_are_one_input(captured):
    m = captured("bert-tiny")
    names = [i.name for i in m.graph.inputs if i.kind is InputKind.PARAMETER]
    assert "bert.embeddings.word_embeddings.weight" in names
    assert "cls.predictions.decoder.weight" not in names


def test_module_paths_on_forward_nodes(captured):
    g = captured("resnet18").graph
    conv = [n for n in g.nodes if n.op == "aten.convolution.default"]
    assert conv[0].module == "conv1"
    assert any(n.module.startswith("layer1.0") for n in conv)


def test_constants_are_stored_inline(captured):
    m = captured("gpt2-tiny")
    consts = [i for i in m.graph.inputs if i.kind is InputKind.CONSTANT]
    assert consts, "GPT-2's forward creates tensor constants"


def test_fake_capture_costs_no_activation_memory():
    """A batch far too large to run is captured: only fake tensors are made."""
    import resource

    from acir.api import CaptureOptions, capture

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = capture(CaptureOptions("mlp", 4_000_000))  # 4M x 64 floats = 1 GiB of input alone
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert m.header.provenance.batch_size == 4_000_000
    assert grown_kib < 200 * 1024


def test_provenance(captured):
    p = captured("bert-tiny").header.provenance
    assert (p.model, p.batch_size, p.seq_len, p.optimizer, p.seed) == ("bert-tiny", 2, 16, "adam", 0)
    # the optimizer as a user builds it: not switched to capturable, no foreach
    assert p.optimizer_options["lr"] == "0.001" and p.optimizer_options["capturable"] == "False"
    assert p.torch_version


def test_backward_nodes_carry_their_forward_module(captured):
    g = captured("resnet18").graph
    conv_bw = [n for n in g.nodes if n.op == "aten.convolution_backward.default"]
    assert conv_bw[-1].module == "conv1"  # the backward runs in reverse: the stem's conv is last
    assert all(n.module == "" for n in g.nodes if n.region is Region.OPTIMIZER)
