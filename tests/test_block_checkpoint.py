"""Checkpointing every block as an acir plan, and plans that retain: priced, realised and run exactly.

``block-checkpoint`` is ``torch.utils.checkpoint`` around every repeated block written in acir's
schedule model: every candidate a block makes, but what leaves it, recomputed and retained, so
each block's forward is replayed once at the start of its backward. Its rewrite must be
bit-identical to the step without it, its simulated peak the measured one and within the plan's
prediction, and every recomputed tensor recomputed exactly once; and the planners must never be
worse than it wherever it fits.
"""

from __future__ import annotations

import copy

import pytest

from acir.analysis.candidates import block_paths, build
from acir.analysis.problem import evaluate, schedule
from acir.ir.analyses import LIVENESS, PLAN
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline

PROFILE_PASS = "profile{reps=1,warmup=0}"


def run(module, pipeline: str):
    m = copy.deepcopy(module)
    PassManager(build_pipeline(pipeline)).run(m)
    return m


@pytest.fixture(scope="module")
def profiled(captured):
    """Profiled captures; bert-tiny at batch 4, sequence 32, where its blocks' activations matter."""
    from acir.api import CaptureOptions, capture

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            m = capture(CaptureOptions("bert-tiny", 4, 32)) if name == "bert-tiny" else captured(name)
            cache[name] = run(m, f"{PROFILE_PASS},liveness")
        return cache[name]

    return get


def test_blocks_are_found_as_acir_bench_finds_them(captured):
    assert block_paths(captured("bert-tiny").graph) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert block_paths(captured("resnet18").graph) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1",
                                                        "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert block_paths(captured("mlp").graph) == []  # a Sequential of single layers has no blocks


@pytest.mark.parametrize("name", ["bert-tiny"])
def test_block_checkpoint_replays_each_block_once_and_runs_exactly(profiled, name):
    from test_rewrite import check, measured_peak

    before = profiled(name)
    planned = run(before, "block-checkpoint")
    plan = planned.analyses[PLAN]
    recomputed = plan.recomputed()
    assert recomputed and all(t.retained and t.recompute_count == 1 for t in recomputed)
    assert planned.header.pipeline[-1] == "block-checkpoint"
    after = run(planned, "rewrite")
    assert check(after).ok
    sim = after.analyses[LIVENESS].simulated_peak_bytes
    assert measured_peak(after) == sim <= plan.predicted_peak_bytes < plan.no_ac_peak_bytes


def test_retaining_replays_once_where_the_cascade_replays_again(profiled):
    """A chain of dropped tensors: without retention each is replayed at every later point that needs
    it; retained, once. The schedule says so, the evaluator prices it, the rewrite makes it."""
    cands = build(profiled("bert-tiny"))
    p = cands.problem
    chosen = [i for i in range(p.n_candidates) if p.allowed[i]]
    cascade, kept = evaluate(p, chosen), evaluate(p, chosen, chosen)
    assert max(cascade.counts) > 1 and set(kept.counts) <= {0, 1}
    assert kept.recompute_s < cascade.recompute_s
    points = schedule(p, chosen, chosen).points
    assert all(not pt.transient for pt in points)


@pytest.mark.parametrize("planner", ["mutwo", "optimal{time-limit=10"])
def test_planners_are_never_worse_than_checkpointing_every_block(profiled, planner):
    before = profiled("bert-tiny")
    block = run(before, "block-checkpoint").analyses[PLAN]
    spec = f"{planner},budget={block.predicted_peak_bytes}}}" if "{" in planner else \
        f"{planner}{{budget={block.predicted_peak_bytes}}}"
    plan = run(before, spec).analyses[PLAN]
    assert plan.predicted_peak_bytes <= block.predicted_peak_bytes
    assert plan.predicted_recompute_s <= block.predicted_recompute_s + 1e-12


def test_the_optimal_pass_at_the_floor_splits_chains_at_block_boundaries_and_runs_exactly(profiled):
    """At the floor a plan that retains everything it recomputes would replay a chain through
    every layer at once; the optimal pass also tries its cover plan with the block boundaries kept
    (chains stop at the blocks' inputs and outputs, as checkpointing does). Whatever it returns fits, is no worse than
    checkpointing every block, states its gap, and the rewrite runs it exactly at its prediction."""
    from test_rewrite import check, measured_peak

    from acir.errors import InfeasibleBudget
    from acir.passes.block_checkpoint import block_boundaries
    from acir.passes.optimal.cover import solve_cover

    before = profiled("bert-tiny")
    cands = build(before)
    leaves = block_boundaries(cands)
    assert leaves
    block = run(before, "block-checkpoint").analyses[PLAN]
    with pytest.raises(InfeasibleBudget) as e:
        run(before, "optimal{budget=1B}")
    floor = e.value.floor_bytes
    assert floor <= block.predicted_peak_bytes
    split = solve_cover(cands.problem, block.predicted_peak_bytes, keep=leaves)
    assert split.bound_s == 0.0 and split.status in ("fits", "no plan")
    assert not set(split.chosen) & set(leaves)
    for budget in (floor, block.predicted_peak_bytes):
        planned = run(before, f"optimal{{budget={budget},time-limit=10}}")
        plan = planned.analyses[PLAN]
        assert plan.predicted_peak_bytes <= budget and 0.0 <= plan.optimality_gap < 1.0
        if budget >= block.predicted_peak_bytes:
            assert plan.predicted_recompute_s <= block.predicted_recompute_s + 1e-12
        after = run(planned, "rewrite")
        assert check(after).ok
        assert measured_peak(after) == after.analyses[LIVENESS].simulated_peak_bytes <= plan.predicted_peak_bytes
