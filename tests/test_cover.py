"""The cover bound (passes/optimal/cover.py): a lower bound on every plan, retained or cascading.

Checked against brute force on small random problems (every recomputed set with every retained
subset of it), on random problems with overlap windows, and through the ``optimal`` pass: the
gap it reports is against this bound, so a plan that meets it is proven optimal in the whole
schedule model, and the pass is never worse than checkpointing every block.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mutwo import lower_bound, make_problem, random_problem
from test_overlap import with_windows

from acir.analysis.problem import Problem, evaluate
from acir.passes.mutwo.solver import solve as mutwo
from acir.passes.optimal import best_plan
from acir.passes.optimal.cover import solve_cover


def subsets(items):
    for r in range(len(items) + 1):
        yield from itertools.combinations(items, r)


def brute_optimum(p: Problem, budget: int) -> float | None:
    """The least recompute time of any plan (recomputed set, retained subset) that fits ``budget``."""
    allowed = [i for i in range(p.n_candidates) if p.allowed[i]]
    best = None
    for chosen in subsets(allowed):
        for retained in subsets(chosen):
            e = evaluate(p, chosen, retained)
            if e.peak <= budget and (best is None or e.recompute_s < best):
                best = e.recompute_s
    return best


def budget_at(p: Problem, frac: float) -> int:
    """Between the lowest peak any plan could have (every candidate gone where it is idle) and no AC."""
    low = lower_bound(p)
    return int(low + frac * (p.no_ac_peak - low))


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.floats(0.0, 1.0), st.booleans())
def test_no_plan_costs_less_than_the_bound(seed: int, k: int, frac: float, windows: bool) -> None:
    p = random_problem(seed, k)
    if windows:
        p = with_windows(p, random.Random(seed))
    budget = budget_at(p, frac)
    c = solve_cover(p, budget, time_limit_s=10)
    best = brute_optimum(p, budget)
    if c.status == "infeasible":
        assert best is None  # the relaxation has no solution: neither has the problem
        return
    if best is None:
        assert not c.feasible
        return
    assert c.bound_s <= best + 1e-9
    if c.feasible:
        e = evaluate(p, c.chosen, c.retained)
        assert e == c.evaluation and e.peak <= budget
        assert c.bound_s <= e.recompute_s + 1e-12
    if c.status == "optimal":
        assert c.evaluation.recompute_s == pytest.approx(best, abs=1e-9)


@settings(deadline=None, max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(5, 40), st.floats(0.2, 1.0))
def test_the_pass_answer_fits_is_never_worse_than_mutwo_and_states_its_gap(seed: int, k: int, frac: float) -> None:
    p = random_problem(seed, k)
    budget = budget_at(p, frac)
    m = mutwo(p, budget)
    r = best_plan(p, budget, time_limit_s=5)
    if not m.feasible:
        return
    assert r.feasible
    e = evaluate(p, r.chosen, r.retained)
    assert e.peak <= budget
    assert e.recompute_s <= evaluate(p, m.chosen, m.retained).recompute_s + 1e-12
    c = solve_cover(p, budget, time_limit_s=5)
    assert 0.0 <= r.optimality_gap <= 1.0
    if e.recompute_s > 0:  # the gap is to the cover bound
        assert r.optimality_gap == pytest.approx(max(0.0, (e.recompute_s - c.bound_s) / e.recompute_s), abs=1e-9)


def test_a_chain_replayed_once_is_proven_optimal():
    """Three 100-byte activations in a chain (each replay reads the one before) and 250 bytes of
    work at rank 5, where all three are idle: a budget of 300 needs all three gone there.
    Cascading, the first is replayed three times and the second twice (3 + 4 + 3 = 10 ms);
    retained, each once at the first backward use: the cover bound's plan, 1 + 2 + 3 ms, gap 0."""
    cands = [{"defined": 0, "lo": 3, "hi": 9, "last": 9, "size": 100, "time": 1e-3},
             {"defined": 1, "lo": 3, "hi": 8, "last": 8, "size": 100, "time": 2e-3, "srcs": [0]},
             {"defined": 2, "lo": 3, "hi": 7, "last": 7, "size": 100, "time": 3e-3, "srcs": [1]}]
    p = make_problem(10, 0, cands, work=[0, 0, 0, 0, 0, 250, 0, 0, 0, 0])
    assert p.no_ac_peak == 550
    cascade = evaluate(p, (0, 1, 2))
    assert cascade.counts == (3, 2, 1) and cascade.peak <= 300
    assert cascade.recompute_s == pytest.approx(10e-3)
    c = solve_cover(p, 550, time_limit_s=5)  # fits as it is: nothing to recompute
    assert c.status == "optimal" and c.chosen == () and c.bound_s == 0.0
    c = solve_cover(p, 300, time_limit_s=5)
    assert c.feasible and c.status == "optimal" and c.retained == (0, 1, 2)
    assert c.evaluation.recompute_s == pytest.approx(6e-3) == c.bound_s
    assert c.evaluation.counts == (1, 1, 1) and c.evaluation.peak == 300
    r = best_plan(p, 300, time_limit_s=5)
    assert r.optimality_gap == 0.0 and evaluate(p, r.chosen, r.retained).recompute_s == pytest.approx(6e-3)


def test_an_unreachable_budget_is_infeasible():
    cands = [{"defined": 0, "lo": 2, "hi": 5, "last": 5, "size": 10, "time": 1e-3}]
    p = make_problem(8, 0, cands, work=[0, 0, 0, 0, 0, 0, 500, 0])
    c = solve_cover(p, p.no_ac_peak - 100, time_limit_s=5)
    assert c.status == "infeasible" and not c.feasible and c.evaluation is None


def test_a_retained_replay_early_in_a_window_is_counted_there():
    """The chain above with a collective in flight before rank 7 only, whose wait blocked 4 ms.
    Retained, all three replays run at rank 7 and hide 4 of their 6 ms (2 ms); the bound must
    count the two whose own first use (8, 9) is outside the window, or it would say 3 ms."""
    cands = [{"defined": 0, "lo": 3, "hi": 9, "last": 9, "size": 100, "time": 1e-3},
             {"defined": 1, "lo": 3, "hi": 8, "last": 8, "size": 100, "time": 2e-3, "srcs": [0]},
             {"defined": 2, "lo": 3, "hi": 7, "last": 7, "size": 100, "time": 3e-3, "srcs": [1]}]
    bare = make_problem(10, 0, cands, work=[0, 0, 0, 0, 0, 250, 0, 0, 0, 0])
    p = Problem(*[getattr(bare, f) for f in ("base_live", "base_after", "persistent", "sizes", "lo", "hi", "times",
                                            "temps", "srcs", "allowed")], overlaps=((7, 7, 4e-3),))
    retained = evaluate(p, (0, 1, 2), (0, 1, 2))
    assert retained.recompute_s == pytest.approx(2e-3) and retained.peak <= 300
    c = solve_cover(p, 300, time_limit_s=5)
    assert c.bound_s <= 2e-3 + 1e-12
    assert c.feasible and c.evaluation.recompute_s == pytest.approx(2e-3)
