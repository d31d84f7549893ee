"""Saved generator states (acir.ir.rng): a replayed dropout draws what the forward drew."""

from __future__ import annotations

import pytest
import torch

from acir.ir import rng
from acir.ir.graph import Region
from acir.ir.ops import resolve_op


@pytest.mark.parametrize("shape,p", [((3, 7), 0.9), ((2, 4, 33), 0.5), ((1,), 0.1)])
def test_replay_draws_the_same_numbers_and_leaves_the_generator_alone(shape, p):
    state_op, replay_op = resolve_op(rng.STATE_OP), resolve_op("acir.bernoulli_replay_.default")
    torch.manual_seed(3)
    mask = torch.empty(shape)
    state = state_op(mask)
    assert torch.get_rng_state().equal(state)  # a snapshot; nothing drawn
    mask.bernoulli_(p)
    after = torch.get_rng_state()
    torch.rand(5)  # the generator moves on before the replay
    moved = torch.get_rng_state()
    again = replay_op(torch.empty(shape), p, state)
    assert again.equal(mask)
    assert torch.get_rng_state().equal(moved) and not moved.equal(after)


def test_state_bytes_is_what_a_snapshot_holds():
    assert rng.state_bytes("cpu") == torch.get_rng_state().numel()


def test_capture_saves_a_state_before_every_dropout_and_keeps_them_to_the_end_of_the_backward(captured):
    g = captured("bert-tiny").graph
    draws = [r for r, n in enumerate(g.nodes) if n.op in rng.REPLAY and n.region is Region.FORWARD]
    links = rng.linked_states(g)
    assert draws and sorted(links) == draws
    keep = [r for r, n in enumerate(g.nodes) if n.op == rng.KEEP_OP]
    assert len(keep) == 1
    last_bw = max(r for r, n in enumerate(g.nodes) if n.region is Region.BACKWARD)
    assert keep[0] == last_bw
    kept = {ref.id for ref in g.nodes[keep[0]].args[0]}
    assert kept == set(links.values())
    assert sorted(n.id for n in g.nodes) == list(range(len(g.nodes)))  # (the optimizer is interleaved)


def test_a_graph_without_dropout_gets_no_state_nodes(captured):
    g = captured("resnet18").graph
    assert not any(n.op in (rng.STATE_OP, rng.KEEP_OP) for n in g.nodes)
