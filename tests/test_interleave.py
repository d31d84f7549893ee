"""interleave-optimizer: updates move into the backward, never before a read of what they write."""

from __future__ import annotations

import pytest

from acir.ir.graph import Region


@pytest.mark.parametrize("name", ["resnet18", "bert-tiny", "user"])
def test_no_backward_node_sees_an_updated_parameter(captured, name):
    g = captured(name).graph
    storage_of = {vid: v.storage for vid, v in g.values.items()}
    written_at: dict[int, int] = {}
    for r, n in enumerate(g.nodes):
        if n.region is Region.OPTIMIZER:
            ins = {storage_of[v] for v in n.input_ids()}
            for v in n.output_ids():
                if storage_of[v] in ins:
                    written_at.setdefault(storage_of[v], r)
    for r, n in enumerate(g.nodes):
        if n.region is Region.BACKWARD:
            for v in n.input_ids() + n.output_ids():
                s = storage_of[v]
                assert s not in written_at or written_at[s] > r, f"{n.name} touches s{s} after its update"


def test_updates_start_before_the_backward_ends(captured):
    regions = [n.region for n in captured("resnet18").graph.nodes]
    first_opt = regions.index(Region.OPTIMIZER)
    last_bw = len(regions) - 1 - regions[::-1].index(Region.BACKWARD)
    assert first_opt < last_bw


def test_pass_is_idempotent(captured):
    import copy

    from acir.passes.interleave_optimizer import InterleaveOptimizer

    m = copy.deepcopy(captured("mlp"))
    assert not InterleaveOptimizer().run(m).modified
