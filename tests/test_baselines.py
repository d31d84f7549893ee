"""The baseline planners: keep-all, recompute-all and chen-sqrt, as functions and as passes.

They write the same plan block as μ-TWO and the optimum, judged by the same evaluator, so
that every comparison is on equal terms; the chain module and its made-up profile come
from ``test_optimal`` (four 32 KiB activations, replays of 3, 7, 11 and 15 ms).
"""

from __future__ import annotations

import dataclasses

import pytest
from test_optimal import chain_module, hand_problem, plan_with

from acir.analysis.problem import Problem, evaluate
from acir.ir.analyses import PLAN, Decision
from acir.passes.chen_sqrt import chen_sqrt
from acir.passes.recompute_all import recompute_all
from acir.pipeline.registry import build_pipeline


def chain_problem(k: int, order: list[int] | None = None) -> Problem:
    """``k`` candidates on a chain; ``order[f]`` is the index of the one made ``f``-th in the forward."""
    order = list(range(k)) if order is None else order
    pos = {c: f for f, c in enumerate(order)}
    n = 2 * k + 1
    lo = tuple(pos[i] + 1 for i in range(k))
    hi = tuple(2 * k - pos[i] for i in range(k))
    live = [0] * n
    for i in range(k):
        for r in range(pos[i], hi[i] + 1):
            live[r] += 1
    return Problem(tuple(live), tuple(live), 0, (1,) * k, lo, hi, (1.0,) * k, (0,) * k,
                   tuple(((order[pos[i] - 1],) if pos[i] else ()) for i in range(k)), (True,) * k)


# -- the pure functions --------------------------------------------------------------------


def test_chen_sqrt_keeps_four_boundaries_of_sixteen():
    p = chain_problem(16)
    chosen = chen_sqrt(p)
    kept = sorted(set(range(16)) - set(chosen))
    assert kept == [3, 7, 11, 15]  # the last of each segment [0..3], [4..7], [8..11], [12..15]
    assert len(chosen) == 12


def test_chen_sqrt_orders_by_forward_position_not_index():
    order = [5, 2, 9, 0, 14, 7, 1, 12, 3, 15, 6, 10, 4, 11, 8, 13]  # index made f-th in the forward
    p = chain_problem(16, order)
    kept = set(range(16)) - set(chen_sqrt(p))
    assert kept == {order[3], order[7], order[11], order[15]}


@pytest.mark.parametrize("k, kept", [(0, []), (1, [0]), (2, [1]), (5, [2, 4]), (10, [3, 6, 9]), (17, [4, 8, 12, 16])])
def test_chen_sqrt_segment_counts(k: int, kept: list[int]):
    """round(sqrt(k)) segments of near-equal length, the earlier ones longer."""
    p = chain_problem(k)
    assert sorted(set(range(k)) - set(chen_sqrt(p))) == kept


def test_baselines_skip_disallowed_candidates():
    p = dataclasses.replace(chain_problem(16), allowed=tuple(i not in (0, 5) for i in range(16)))
    assert recompute_all(p) == tuple(i for i in range(16) if i not in (0, 5))
    chosen = chen_sqrt(p)
    assert not {0, 5} & set(chosen)
    kept = sorted(set(range(16)) - set(chosen) - {0, 5})
    # 14 allowed, round(sqrt(14)) = 4 segments of 4, 4, 3, 3: 1-4 | 6-9 | 10-12 | 13-15
    assert kept == [4, 9, 12, 15]


def test_recompute_all_on_the_hand_problem():
    p = hand_problem()
    assert recompute_all(p) == (0, 1, 2, 3)
    # the spike before node 5 recomputes B, C, D and (dead, B's source) A: 50 - 45 + 45 + D's 30
    assert evaluate(p, recompute_all(p)).peak == 80


# -- the passes ----------------------------------------------------------------------------


def test_keep_all_chooses_nothing():
    plan = plan_with("liveness,keep-all").analyses[PLAN]
    assert plan.planner == "keep-all"
    assert plan.recomputed() == []
    assert plan.predicted_peak_bytes == plan.no_ac_peak_bytes == 266244
    assert plan.budget_bytes == plan.predicted_peak_bytes  # no budget: the prediction is recorded
    assert plan.predicted_recompute_s == 0.0 and plan.optimality_gap == -1.0


def test_recompute_all_chooses_every_allowed():
    plan = plan_with("liveness,recompute-all").analyses[PLAN]
    assert plan.planner == "recompute-all"
    assert [t.storage for t in plan.recomputed()] == [6, 8, 10, 12]
    kept = [t for t in plan.tensors if t.decision is Decision.KEEP]
    assert [(t.storage, t.reason) for t in kept] == [(13, "a step output")]
    # before node 11, r4 is replayed with r3, r2 and r1 (dead sources, each once): 233476 less
    # the four saved at rank 10, plus the four back, plus one conv output = the no-AC peak
    assert plan.predicted_peak_bytes == 233476 - 4 * 32768 + 5 * 32768 == 266244
    assert [t.recompute_count for t in plan.recomputed()] == [4, 3, 2, 1]
    assert plan.predicted_recompute_s == pytest.approx(0.003 * 4 + 0.007 * 3 + 0.011 * 2 + 0.015)


def test_chen_sqrt_pass_on_the_chain():
    """Four activations: two segments [r1, r2], [r3, r4]; r2 and r4 are kept."""
    plan = plan_with("liveness,chen-sqrt").analyses[PLAN]
    assert [t.storage for t in plan.recomputed()] == [6, 10]
    assert plan.predicted_recompute_s == pytest.approx(0.003 + 0.011)


def test_a_budget_is_recorded_not_planned_for():
    plan = plan_with("liveness,keep-all{budget=220000}").analyses[PLAN]
    assert plan.budget_bytes == 220000 and plan.recomputed() == []
    assert plan.predicted_peak_bytes > plan.budget_bytes  # no error: a baseline does not plan to it
    plan = plan_with("liveness,recompute-all{budget=100%}").analyses[PLAN]
    assert plan.budget_bytes == 266244


@pytest.mark.parametrize("name", ["keep-all", "recompute-all", "chen-sqrt"])
def test_specs_round_trip(name: str):
    assert build_pipeline(name)[0].spec() == name
    assert build_pipeline(f"{name}{{budget=60%}}")[0].spec() == f"{name}{{budget=60%}}"


def test_baselines_preserve_the_analyses():
    m = chain_module()
    m = plan_with("liveness,chen-sqrt,keep-all", m)
    assert m.analyses[PLAN].planner == "keep-all"
    assert m.header.pipeline[-2:] == ["chen-sqrt", "keep-all"]
