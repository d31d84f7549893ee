"""The profile pass: per-node times and memory measured on the rebuilt model."""

from __future__ import annotations

import copy

import pytest

from acir.errors import PassFailed
from acir.ir.analyses import PROFILE
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline


def _profiled(module, spec="profile{reps=2,warmup=1}"):
    m = copy.deepcopy(module)
    PassManager(build_pipeline(spec)).run(m)
    return m


@pytest.mark.parametrize("name", ["mlp", "user"])
def test_profile_block(captured, name):
    m = _profiled(captured(name))
    p = m.analyses[PROFILE]
    g = m.graph
    assert p.revision == m.header.revision and (p.reps, p.warmup) == (2, 1)
    assert [n.node for n in p.nodes] == [n.id for n in g.nodes]
    assert all(n.run_s > 0 for n in p.nodes)
    assert p.measured_peak_bytes == max(n.peak_bytes for n in p.nodes)
    assert p.peak_node in {n.id for n in g.nodes}
    assert p.iteration_s > 0 and p.device == "cpu" and p.method == "perf_counter"
    # per-node bookkeeping adds up: live after = peak - freed, peak = live before + alloc
    live_before = p.nodes[0].peak_bytes - p.nodes[0].alloc_bytes
    for n in p.nodes:
        assert n.peak_bytes == live_before + n.alloc_bytes
        assert n.live_bytes == n.peak_bytes - n.freed_bytes
        live_before = n.live_bytes
    assert m.header.pipeline[-1] == "profile{reps=2,warmup=1}"


def test_profile_peak_matches_the_whole_step_measurement(captured):
    """Node-by-node running measures the same peak as the lowered fx step."""
    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    m = _profiled(captured("resnet18"), "profile{reps=1,warmup=0}")
    model, opt, _, batch = rebuild(m.header.provenance)
    step = BoundStep(m, model, opt)
    assert measure_peak(lambda: step(batch), step.inputs(batch)) == m.analyses[PROFILE].measured_peak_bytes


def test_profile_round_trips(captured):
    from acir.ir.serde import dumps, loads

    m = _profiled(captured("mlp"), "profile{reps=1,warmup=0}")
    data = dumps(m)
    assert dumps(loads(data)) == data
    assert loads(data).analyses[PROFILE] == m.analyses[PROFILE]


def test_profile_needs_a_rebuildable_model(captured):
    m = copy.deepcopy(captured("mlp"))
    m.header.provenance.model = "<python:Sequential>"
    with pytest.raises(PassFailed, match="rebuild the model"):
        PassManager(build_pipeline("profile")).run(m)
