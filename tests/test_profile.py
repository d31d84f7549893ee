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


# -- which profile a plan comes from; the analytic profile -----------------------------------------------


def test_a_plan_records_the_measured_profile_it_came_from(captured):
    from acir.ir.analyses import PLAN

    assert build_pipeline("profile")[0].spec() == "profile"  # the default is still measured, and prints so
    m = _profiled(captured("mlp"), "profile{reps=2,warmup=0},liveness,keep-all")
    prof, plan = m.analyses[PROFILE], m.analyses[PLAN]
    assert prof.method == "perf_counter" and prof.malloc == "heap-retained"
    assert plan.profile.startswith("method=perf_counter reps=2 malloc=heap-retained times=sha256:")
    assert m.header.pipeline[1] == "profile{reps=2,warmup=0}"


def test_bad_profile_options_are_refused_when_parsed():
    from acir.errors import ParseError

    with pytest.raises(ParseError, match="measured or analytic"):
        build_pipeline("profile{method=guess}")
    with pytest.raises(ParseError, match="heap-retained or default"):
        build_pipeline("profile{malloc=jemalloc}")


def test_analytic_profiles_give_the_same_plan(captured):
    """Runs nothing (the model cannot even be rebuilt here), and two of them give the same times and plan."""
    from acir.ir.analyses import PLAN
    from acir.passes.profile import ROOFLINE

    m = copy.deepcopy(captured("resnet18"))
    m.header.provenance.model = "<python:ResNet>"  # as acir.compile records it: no rebuild possible
    probe = _profiled(m, "profile{method=analytic},liveness,keep-all").analyses[PLAN]
    budget = (probe.floor_bytes + probe.no_ac_peak_bytes) // 2
    a, b = (_profiled(m, f"profile{{method=analytic}},liveness,mutwo{{budget={budget}}}") for _ in range(2))
    pa, pb = a.analyses[PROFILE], b.analyses[PROFILE]
    assert pa == pb
    assert (pa.method, pa.reps, pa.measured_peak_bytes, pa.malloc) == ("analytic", 0, 0, "")
    assert pa.iteration_s == pytest.approx(sum(n.run_s for n in pa.nodes))
    plan_a, plan_b = a.analyses[PLAN], b.analyses[PLAN]
    assert plan_a.recomputed() and plan_a.tensors == plan_b.tensors
    assert plan_a.profile == plan_b.profile and plan_a.profile.startswith("method=analytic reps=0 ")
    assert a.header.pipeline[1] == "profile{method=analytic}"
    # the roofline: a convolution is priced by its FLOPs (compute-bound), a view costs only the per-op overhead
    flops_per_s, bytes_per_s, overhead_s = ROOFLINE["cpu"]
    run = pa.run_s()
    g = a.graph
    conv = next(n for n in g.nodes if n.op == "aten.convolution.default")
    moved = sum(g.values[v].nbytes for v in conv.input_ids() + conv.output_ids())
    assert run[conv.id] > overhead_s + moved / bytes_per_s
    view = next(n for n in g.nodes if n.op in ("aten.view.default", "aten.t.default"))
    assert run[view.id] == overhead_s
