"""Recomputation hidden behind a collective: the overlap windows of the shared schedule model.

A data-parallel step launches a bucket's all-reduce and waits for it later; a recomputation
point between the two runs while the collective is in flight, and up to the wait's measured
blocking time of it costs nothing. The evaluator, the incremental pricing, μ-TWO and the MILP
all see it through :attr:`Problem.overlaps`, which :func:`overlap_windows` reads from the graph
and the profile.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mutwo import make_problem, random_problem

from acir.analysis.plan_delta import PlanState
from acir.analysis.problem import Problem, evaluate
from acir.passes.mutwo.solver import solve as mutwo
from acir.passes.optimal.solver import solve as optimal


def with_windows(p: Problem, rng: random.Random) -> Problem:
    """``p`` with random disjoint overlap windows over its backward ranks."""
    n = len(p.base_live)
    cuts = sorted(rng.sample(range(n // 2, n + 1), min(6, n - n // 2 + 1)))
    wins = []
    for a, b in zip(cuts[::2], cuts[1::2]):
        if a < b:
            wins.append((a, b - 1, rng.choice([0.0, 1e-4, 1e-3, 5e-3, 1e-2])))
    return Problem(p.base_live, p.base_after, p.persistent, p.sizes, p.lo, p.hi, p.times, p.temps, p.srcs,
                   p.allowed, tuple(wins))


def two_twins(slack: float) -> Problem:
    """Two candidates alike in bytes and replay time; the second's backward use falls in a window
    whose collective's wait blocked ``slack`` seconds. Either one alone meets a budget of 100."""
    cands = [{"defined": 0, "lo": 2, "hi": 6, "last": 6, "size": 40, "time": 1e-3},
             {"defined": 1, "lo": 2, "hi": 5, "last": 5, "size": 40, "time": 1e-3}]
    p = make_problem(8, 10, cands, work=[0, 0, 0, 50, 0, 0, 0, 0])
    return Problem(p.base_live, p.base_after, p.persistent, p.sizes, p.lo, p.hi, p.times, p.temps, p.srcs,
                   p.allowed, ((4, 5, slack),))


def test_a_recomputation_inside_a_window_costs_what_the_wait_did_not_cover():
    p = two_twins(4e-4)
    assert evaluate(p, [0]).recompute_s == pytest.approx(1e-3)        # outside: full price
    assert evaluate(p, [1]).recompute_s == pytest.approx(6e-4)        # inside: less the wait
    assert evaluate(two_twins(1.0), [1]).recompute_s == 0.0           # a longer wait hides all of it
    assert evaluate(p, [0, 1]).recompute_s == pytest.approx(1.6e-3)   # only what is inside is hidden
    with pytest.raises(ValueError, match="overlaps the one before it"):
        Problem(p.base_live, p.base_after, p.persistent, p.sizes, p.lo, p.hi, p.times, p.temps, p.srcs,
                p.allowed, ((4, 5, 1.0), (5, 6, 1.0)))


@pytest.mark.parametrize("planner", ["mutwo", "optimal"])
def test_the_planners_pick_the_recomputation_a_collective_hides(planner):
    p = two_twins(1.0)
    assert max(p.base_live) > 100 >= evaluate(p, [0]).peak and evaluate(p, [1]).peak <= 100
    s = mutwo(p, 100) if planner == "mutwo" else optimal(p, 100, time_limit_s=10)
    assert s.feasible and tuple(s.chosen) == (1,)
    assert s.evaluation.recompute_s == 0.0
    # without the window, the two cost the same, and nothing says which
    bare = Problem(p.base_live, p.base_after, p.persistent, p.sizes, p.lo, p.hi, p.times, p.temps, p.srcs,
                   p.allowed)
    assert evaluate(bare, [1]).recompute_s == evaluate(bare, [0]).recompute_s > 0


problems = st.builds(lambda seed, k: with_windows(random_problem(seed, k), random.Random(seed)),
                     st.integers(0, 2**32 - 1), st.integers(1, 30))


@settings(deadline=None, max_examples=40)
@given(problems, st.randoms(use_true_random=False))
def test_incremental_pricing_agrees_with_evaluate_under_windows(p: Problem, rnd: random.Random) -> None:
    allowed = [i for i in range(p.n_candidates) if p.allowed[i]]
    chosen = {i for i in allowed if rnd.random() < 0.3}
    state = PlanState(p, chosen)
    approx = dict(rel=1e-9, abs=1e-12)
    assert state.recompute_s == pytest.approx(evaluate(p, chosen).recompute_s, **approx)
    for _ in range(2 * len(allowed)):
        c = rnd.choice(allowed) if allowed else None
        if c is None:
            break
        want = evaluate(p, chosen ^ {c})
        got = state.price_remove(c) if c in chosen else state.price_add(c)
        assert got[0] == want.peak
        assert got[1] == pytest.approx(want.recompute_s, **approx)
        assert got[1] >= -1e-12
        if rnd.random() < 0.5:
            (state.remove if c in chosen else state.add)(c)
            chosen ^= {c}
            assert state.recompute_s == pytest.approx(evaluate(p, chosen).recompute_s, **approx)


@settings(deadline=None, max_examples=6)
@given(problems, st.floats(0.3, 1.0))
def test_the_milp_is_never_worse_than_mutwo_under_windows(p: Problem, frac: float) -> None:
    budget = int(p.persistent + frac * (p.no_ac_peak - p.persistent))
    m = mutwo(p, budget)
    if not m.feasible:
        return
    o = optimal(p, budget, [m.chosen], time_limit_s=2)
    assert o.feasible and o.evaluation.peak <= budget
    # in the MILP's model (no retention: the optimal pass weighs retained plans apart)
    assert o.evaluation.recompute_s <= evaluate(p, m.chosen).recompute_s + 1e-12


def test_windows_come_from_each_collective_and_its_wait():
    from ir_fixtures import GraphBuilder

    from acir.analysis.candidates import overlap_windows
    from acir.ir.graph import InputKind
    from acir.ir.ops import WAIT_TENSOR as WAIT_OP

    b = GraphBuilder()
    x = b.input("w", InputKind.PARAMETER, (8,))
    reduce = "_c10d_functional.all_reduce_.default"
    ops = ["aten.relu.default", reduce, "aten.relu.default", "aten.relu.default", WAIT_OP, reduce,
           "aten.relu.default", WAIT_OP]
    waits, flight = [], None
    for op in ops:
        if op == reduce:
            flight = b.alias(x)
            b.node(op, [x, "avg", "0"], flight)
        elif op == WAIT_OP:
            waits.append(b.node(op, [flight], b.alias(flight)))
        else:
            b.node(op, [x], b.new((8,)))
    run_s = {n.id: 1e-4 for n in b.graph.nodes}
    run_s[waits[1].id] = 0.0
    run_s[waits[0].id] = 2e-3
    assert overlap_windows(b.graph, run_s) == ((2, 4, 2e-3),)  # the second wait blocked for nothing: no window
    run_s[waits[1].id] = 1e-3
    assert overlap_windows(b.graph, run_s) == ((2, 4, 2e-3), (6, 7, 1e-3))
