"""μ-TWO's greedy choice of activations to recompute, as a pure function of a :class:`Problem`.

The algorithm is the recompute half of the memory optimiser in Purandare, Wasay, Jain and
Idreos, "μ-TWO: 3× Faster Multi-Model Training with Orchestration and Memory
Optimization", MLSys 2023 (Appendix A, Algorithms B–G), whose bookkeeping of recompute
sources and counts comes from Capuchin (Peng et al., "Capuchin: Tensor-based GPU Memory
Management for Deep Learning", ASPLOS 2020). No IR and no torch here: a plain
:class:`~acir.analysis.problem.Problem` comes in, candidate indices go out, as in PyTorch's
``knapsack.py``; :mod:`acir.passes.mutwo` turns that into a pass.

Every candidate carries the paper's quantities: ``memory_size`` (``sizes[i]``), its
``recomp_srcs`` (``srcs[i]``: other candidates its replay reads; anything else it reads is
always in memory), ``recomp_time`` (``times[i]``), a ``recomp_cnt`` that starts at 1, and

    total_recomp_time = recomp_time × recomp_cnt,   recompute_ratio = memory_size / total_recomp_time

— bytes freed per second of replay (a zero time is guarded by a tiny epsilon, so free
replays come first). The loop is then:

1. Simulate the plan; stop as soon as the predicted peak is within the budget.
2. Take the candidate with the largest ratio *among those that can lower the current
   peak* (below), and recompute it.
3. Algorithm E: every already-chosen recomputation ``r`` that read the new choice ``c``
   can no longer find it in memory, so it replays ``c`` inside itself:
   ``srcs_r ← srcs_r − {c} ∪ srcs_c`` and ``recomp_time_r += recomp_time_c``; each such
   ``r`` adds one to ``c``'s count ``cnt`` (which starts at 1, for ``c`` itself).
4. Algorithm F: every remaining candidate ``d`` that reads ``c`` inherits ``c``'s sources
   and time the same way — unless ``d``'s first backward use (where its replay would run)
   lies outside ``c``'s idle window, where ``c`` is back in memory and a plain source
   again. Every remaining ``d`` among ``c``'s sources would now be replayed ``cnt`` times
   if it were recomputed too, so ``total_recomp_time_d = cnt × recomp_time_d``. Ratios
   of everything touched are updated.

The step-2 restriction is ours. The paper takes the global argmax of the ratio, and
MUTWO.md lists "checking only one peak node" among the traps of published
implementations: a tensor with a high ratio whose idle window misses the peak frees
nothing where it matters, yet costs its replay, and the global loop would keep paying for
such picks. So we only consider candidates that can lower the peak as it stands: at a
plain rank ``r``, those whose window ``[lo, hi)`` covers ``r``; at a recomputation spike
before node ``h``, those that cover ``h − 1`` (and so lower the memory the spike sits on)
and are not themselves recomputed at ``h``. At a plain peak the filter loses nothing: a
pick outside it cannot bring that peak down, so it only spares the budget test useless
replays. At a spike it is a heuristic: a tensor it admits may be replayed inside the
spike as a dead source and raise it, and one it excludes (recomputed at ``h`` itself)
could in odd cases lower it. When no candidate passes the filter the loop stops at the
prefix of its picks with the lowest peak. That can happen above a budget other picks reach
(a replay spike of its own making that nothing left can lower: which picks it made depends
on the times), so the effective greedy of phase 3 then starts from nothing instead, and its
plan, when it fits, goes through the same clean-up; when neither fits, the lower of the two
is returned, infeasible.

The stopping test is the shared evaluator's peak (:func:`acir.analysis.problem.evaluate`),
which all planners are judged by. Calling it every round would be quadratic, so the loop
runs on :class:`acir.analysis.plan_delta.PlanState`, the same model kept incrementally (the
one the clean-up prices with): one schedule model, written once in
:mod:`acir.analysis.problem` and kept incrementally in one place. The final peak is
checked against ``evaluate`` and the tests check it on every prefix. Candidates are
indexed by source, so each round's bookkeeping touches only the candidates that read the
pick, and eligibility is a vectorised window test.

The phases
----------

:func:`solve` runs five phases; the last four are a clean-up (ours, on by default,
``refine=False`` turns it off) that starts once the greedy has a feasible plan:

1. **greedy** (:func:`_run`): the paper's loop above, with its peak filter.
2. **prune** (:func:`_prune`, a reverse delete): while some pick can go without breaking
   the budget, the one whose removal saves the most recompute time goes.
3. **effective greedy** (:func:`_effective_greedy`), then pruned: a second greedy that
   scores each of the ``Tuning.width`` best-ratio peak-covering candidates by the peak it
   really removes per second it really adds (both from the evaluator's model, so cascades
   through recomputed sources are priced exactly). It gives up once its plan costs
   ``Tuning.slack`` times the best one so far (its picks only add time; a heuristic cut:
   where it won on the benchmarks, its plan before pruning cost at most 5% more than the
   pruned greedy's).
4. **swap** (:func:`_swap`), on the best plan so far: replace one pick by one candidate not
   taken when that keeps the budget and lowers the recompute time, prune, and repeat until
   no swap helps. The ratio rule can take an activation whose replay later turns out
   expensive - a cascade through sources recomputed after it - and never revisit it.
5. **repair** (:func:`_repair`, ruin and recreate), on the best plan so far: drop one pick
   (the one whose removal saves the most time first), let the effective greedy add what
   the budget then needs - never the dropped one - and prune; kept when cheaper. One
   expensive replay (with its cascade) is often worth several cheap ones, which no single
   swap finds.

Every plan is judged by ``evaluate``; the cheapest feasible one is returned, and
``Solution.refined`` names the phases that made it (``"pruned"``, ``"effective greedy,
pruned, swapped"``, ``"greedy, repaired"``, ...; empty for the greedy's own). Each phase's
work is capped by a count (:class:`Tuning`), never a clock, so a problem gets the same plan
on any machine. Near the floor the paper's ratio, blind to the cascades its picks cause, can
cost twice the optimum (ResNet-18 at 60%: 2.4×); the clean-up brings it within a few
percent. Every price in the clean-up comes from :class:`acir.analysis.plan_delta.PlanState`,
which keeps the evaluator's numbers for the current plan and prices adding or dropping one
candidate by redoing only what that candidate touches (its window's maximum, from block
maxima, and the recomputation points it joins or leaves): 40-150× cheaper than a call to
``evaluate`` on ResNet-152 and deeper, the same peak, the time to float rounding. The
plans it returns are judged by ``evaluate`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from acir.analysis.plan_delta import PlanState
from acir.analysis.problem import (
    Evaluation,
    Problem,
    evaluate,
    known_floor,
)

__all__ = ["DEFAULT", "Solution", "Tuning", "reachable_floor", "solve"]

_MIN_TIME_S = 1e-12  # seconds a ratio divides by at least: a free replay's ratio stays finite (and largest)
_IMPROVES_S = 1e-12  # seconds a swap or repair must save to count: less is float noise, and could let it cycle
_WINS_S = 1e-15      # seconds a clean-up plan must save over the best so far to replace it (float noise)


@dataclass(frozen=True)
class Tuning:
    """The bounds of the clean-up (phases 2-5 of the module docstring); :data:`DEFAULT` is the pass's.

    Each caps work by a count, never by time, so that a problem gets the same plan on any
    machine and under any load; a phase that reaches its cap returns the best plan it has,
    which is within the budget.
    """

    prune_evals: int = 400     # picks priced per prune, all rounds: a round prices every pick (quadratic uncapped)
    swap_evals: int = 1500     # prices per swap search: one pass prices each pick against each candidate not taken
    repair_moves: int = 12     # ruin-and-recreate moves: each one reruns the effective greedy and a prune
    width: int = 32            # candidates the effective greedy prices exactly per pick, best ratio first: its cost
    slack: float = 1.1         # effective greedy gives up past this × the best plan's time (its picks only add time)
    retain_evals: int = 300    # plans priced by the retention phase: one per chosen candidate recomputed more than once


DEFAULT = Tuning()


@dataclass(frozen=True)
class Solution:
    chosen: tuple[int, ...]                 # candidates to recompute, in pick order
    evaluation: Evaluation                  # evaluate(problem, chosen)
    feasible: bool                          # evaluation.peak <= budget
    iterations: int                         # greedy rounds run (past ``chosen`` when infeasible)
    counts: tuple[int, ...]                 # per candidate: μ-TWO's recomp_cnt when it stopped
    recompute_times: tuple[float, ...]      # per candidate: recomp_time when it stopped
    srcs: tuple[tuple[int, ...], ...]       # per candidate: recompute sources when it stopped
    refined: str = ""                       # "" = the greedy's picks as they are; else the clean-up that won
    retained: tuple[int, ...] = ()          # chosen candidates recomputed once, at their first need, and kept


class _Greedy:
    """The state of μ-TWO's loop: the memory model plus the paper's per-candidate bookkeeping."""

    def __init__(self, p: Problem) -> None:
        k = p.n_candidates
        self.p = p
        self.mem = PlanState(p)  # the shared evaluator, kept incrementally (acir.analysis.plan_delta)
        self.lo = np.asarray(p.lo, dtype=np.int64)
        self.hi = np.asarray(p.hi, dtype=np.int64)
        self.sizes = np.asarray(p.sizes, dtype=np.float64)
        self.remaining = np.asarray(p.allowed, dtype=bool).copy()
        self.chosen: list[int] = []
        self.srcs: list[set[int]] = [set(s) for s in p.srcs]
        self.readers: list[set[int]] = [set() for _ in range(k)]  # j -> candidates whose current srcs hold j
        for i, ss in enumerate(self.srcs):
            for j in ss:
                self.readers[j].add(i)
        self.time = [float(t) for t in p.times]
        self.cnt = [1] * k
        self.ratio = self.sizes / np.maximum(np.asarray(p.times, dtype=np.float64), _MIN_TIME_S)

    def _rate(self, d: int) -> None:
        self.ratio[d] = self.p.sizes[d] / max(self.cnt[d] * self.time[d], _MIN_TIME_S)

    def _inherit(self, r: int, c: int) -> None:
        """``srcs_r ← srcs_r − {c} ∪ srcs_c``, ``recomp_time_r += recomp_time_c``."""
        self.srcs[r].discard(c)
        self.readers[c].discard(r)
        for s in self.srcs[c]:
            if s not in self.srcs[r]:
                self.srcs[r].add(s)
                self.readers[s].add(r)
        self.time[r] += self.time[c]

    def pick(self, peak_rank: int, is_spike: bool) -> int | None:
        """The best candidate that can lower the current peak, or None."""
        if is_spike:  # lowers after[h-1] and is not recomputed at h
            ok = (self.lo <= peak_rank - 1) & (self.hi > peak_rank)
        else:
            ok = (self.lo <= peak_rank) & (self.hi > peak_rank)
        ok &= self.remaining
        if not ok.any():
            return None
        return int(np.argmax(np.where(ok, self.ratio, -np.inf)))

    def choose(self, c: int) -> None:
        p = self.p
        self.mem.add(c)
        self.remaining[c] = False
        self.chosen.append(c)
        cnt = 1
        for r in sorted(self.readers[c]):
            if r in self.mem.chosen and r != c:  # Algorithm E
                self._inherit(r, c)
                cnt += 1
            elif self.remaining[r] and p.lo[c] <= p.hi[r] < p.hi[c]:  # Algorithm F, c dead at r's replay
                self._inherit(r, c)
                self._rate(r)
        self.cnt[c] = cnt
        for d in self.srcs[c]:
            if self.remaining[d]:
                self.cnt[d] = cnt
                self._rate(d)


def _run(p: Problem, budget: int, max_picks: int | None) -> tuple[_Greedy, bool, int, int]:
    """Run the loop; returns (state, feasible, rounds, picks at the lowest peak seen)."""
    g = _Greedy(p)
    best_peak, best_len = None, 0
    rounds = 0
    while True:
        peak, rank, spike = g.mem.peak()
        if best_peak is None or peak < best_peak:
            best_peak, best_len = peak, len(g.chosen)
        if peak <= budget:
            return g, True, rounds, len(g.chosen)
        if max_picks is not None and len(g.chosen) >= max_picks:
            return g, False, rounds, best_len
        c = g.pick(rank, spike)
        if c is None:
            return g, False, rounds, best_len
        g.choose(c)
        rounds += 1


def _prune(p: Problem, budget: int, chosen: list[int], max_evals: int = DEFAULT.prune_evals) -> list[int]:
    """Drop picks the budget can do without, the one whose removal saves the most time first,
    until none can go (or ``max_evals`` evaluations: a deterministic cap on the work). Each
    removal is priced by :class:`~acir.analysis.plan_delta.PlanState` (``evaluate``'s peak exactly)."""
    chosen = list(chosen)
    state = PlanState(p, chosen)
    evals = 0
    while chosen and evals < max_evals:
        best = None
        for c in chosen:
            evals += 1
            if state.peak_bound_remove(c) > budget:  # cannot go, whatever its recomputation points do
                continue
            peak, time = state.price_remove(c)
            if peak <= budget and (best is None or time < best[0]):
                best = (time, c)
        if best is None:
            break
        chosen.remove(best[1])
        state.remove(best[1])
    return chosen


def _swap(p: Problem, budget: int, chosen: list[int], tuning: Tuning = DEFAULT) -> list[int]:
    """Local search: replace one pick by one candidate not taken when that keeps the plan
    within the budget and lowers its recompute time (cascades and spikes priced exactly by
    :class:`~acir.analysis.plan_delta.PlanState`), then drop what the budget no longer needs; repeat
    until no swap helps or ``tuning.swap_evals`` prices (a deterministic cap on the work). The
    greedy's ratio rule can take an activation whose replay later turns out expensive —
    a cascade through sources recomputed after it — and never revisit it; this does."""
    chosen = list(chosen)
    taken = set(chosen)
    state = PlanState(p, chosen)
    current = state.recompute_s
    others = sorted((i for i in range(p.n_candidates) if p.allowed[i] and i not in taken),
                    key=lambda i: (p.times[i], -p.sizes[i], i))
    max_evals = tuning.swap_evals
    evals = 0
    improved = True
    while improved and evals < max_evals:
        improved = False
        # the picks whose removal saves the most time are tried first
        order = sorted(chosen, key=lambda c: (state.price_remove(c)[1], c))
        evals += len(order)
        for out in order:
            state.remove(out)
            for inn in others:
                evals += 1
                peak, t = state.price_add(inn)
                if peak <= budget and t < current - _IMPROVES_S:
                    state.add(inn)
                    chosen[chosen.index(out)] = inn
                    others[others.index(inn)] = out
                    others.sort(key=lambda i: (p.times[i], -p.sizes[i], i))
                    current = t
                    improved = True
                    break
                if evals >= max_evals:
                    break
            if improved or evals >= max_evals:
                if not improved:
                    state.add(out)
                break
            state.add(out)
        if improved:
            chosen = _prune(p, budget, chosen, tuning.prune_evals)
            taken = set(chosen)
            state = PlanState(p, chosen)
            current = state.recompute_s
            others = sorted((i for i in range(p.n_candidates) if p.allowed[i] and i not in taken),
                            key=lambda i: (p.times[i], -p.sizes[i], i))
    return chosen


def _effective_greedy(p: Problem, budget: int, width: int, limit_s: float = float("inf"),
                      start: tuple[int, ...] = (), banned: frozenset[int] = frozenset(),
                      lowest: bool = False) -> list[int] | None:
    """A second greedy: among the ``width`` best-ratio candidates that cover the current peak,
    take the one that lowers the peak most per second of recomputation it really adds (both
    priced by the evaluator's model, :class:`~acir.analysis.plan_delta.PlanState`, so cascades and
    spikes count). Gives up (None) when none of them lowers the peak, or once its plan's
    recompute time exceeds ``limit_s`` (picks only ever add time); with ``lowest``, a plan that
    gets stuck returns its prefix with the lowest peak instead of None."""
    ratio = np.array([p.sizes[i] / max(p.times[i], _MIN_TIME_S) for i in range(p.n_candidates)])
    allowed = np.array(p.allowed, dtype=bool)
    allowed[list(banned)] = False
    lo, hi = np.asarray(p.lo), np.asarray(p.hi)
    chosen: list[int] = list(start)
    state = PlanState(p, chosen)
    peak, rank, spike = state.peak()
    time = state.recompute_s
    best_peak, best_len = peak, len(chosen)
    while peak > budget:
        if time > limit_s:
            return None
        r = rank - 1 if spike else rank
        ok = allowed & (lo <= r) & (hi > r)
        ok[chosen] = False
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return chosen[:best_len] if lowest else None
        best = None
        for i in idx[np.argsort(-ratio[idx])][:width].tolist():
            new_peak, new_time = state.price_add(i)
            gain = peak - new_peak
            if gain <= 0:
                continue
            score = gain / max(new_time - time, _MIN_TIME_S)
            if best is None or score > best[0]:
                best = (score, i)
        if best is None:
            return chosen[:best_len] if lowest else None
        chosen.append(best[1])
        state.add(best[1])
        peak, rank, spike = state.peak()
        time = state.recompute_s
        if peak < best_peak:
            best_peak, best_len = peak, len(chosen)
    return chosen


def solve(problem: Problem, budget: int, refine: bool = True, tuning: Tuning = DEFAULT,
          starts: Sequence[tuple[Sequence[int], Sequence[int]]] = ()) -> Solution:
    """μ-TWO's recomputation plan for ``problem`` within ``budget`` bytes (see the module docstring).

    The phases, in order: the **greedy** loop (the paper's, with its peak filter; when it
    cannot reach the budget, its prefix with the lowest peak is returned, infeasible). With
    ``refine`` (the default) and a feasible greedy plan, the clean-up follows: **prune**
    drops the picks the budget does not need; the **effective greedy** prices each of the
    ``tuning.width`` best-ratio candidates by its exact effect on the evaluator, is
    abandoned once its plan costs ``tuning.slack`` times the best so far, and is pruned
    too; **swap** then trades single picks of the best plan for cheaper ones, and
    **repair** ruins and recreates it one pick at a time. Every plan is judged by
    ``evaluate``; the cheapest feasible one wins, and ``Solution.refined`` says which.
    Last, **retain** (:func:`_retain`) lets the winner recompute a candidate once, at its first
    need, wherever that removes more replays than the memory it holds costs. ``starts`` are
    plans from elsewhere (chosen, retained: a checkpointed block's schedule) that are priced
    and kept when they fit and cost less, so μ-TWO is never worse than them.
    ``tuning`` bounds the clean-up's work (:class:`Tuning`).
    """
    g, feasible, rounds, best_len = _run(problem, budget, None)
    if not feasible and best_len < len(g.chosen):
        g, _, _, _ = _run(problem, budget, best_len)  # replay up to the lowest-peak state
    chosen = tuple(g.chosen)
    ev = evaluate(problem, chosen)
    assert ev.peak == g.mem.peak()[0], "incremental peak disagrees with evaluate()"
    greedy = Solution(chosen=chosen, evaluation=ev, feasible=feasible and ev.peak <= budget, iterations=rounds,
                      counts=tuple(g.cnt), recompute_times=tuple(g.time),
                      srcs=tuple(tuple(sorted(s)) for s in g.srcs))
    if not refine:
        return greedy
    best = greedy
    if not greedy.feasible:  # the ratio rule got stuck (a spike no pick lowers): price picks exactly instead
        alt = _effective_greedy(problem, budget, tuning.width, lowest=True)
        e = evaluate(problem, alt)
        if e.peak < greedy.evaluation.peak:
            best = Solution(chosen=tuple(alt), evaluation=e, feasible=e.peak <= budget, iterations=rounds,
                            counts=e.counts, recompute_times=problem.times, srcs=problem.srcs,
                            refined="effective greedy")
        if not best.feasible:
            return _best_start(problem, budget, starts, best)

    def consider(name: str, picks: list[int]) -> None:
        nonlocal best
        e = evaluate(problem, picks)  # the final word on every plan is the shared evaluator's
        if e.peak <= budget and e.recompute_s < best.evaluation.recompute_s - _WINS_S:
            best = Solution(chosen=tuple(picks), evaluation=e, feasible=True, iterations=rounds,
                            counts=e.counts, recompute_times=problem.times, srcs=problem.srcs, refined=name)

    def prune(picks: list[int]) -> list[int]:
        return _prune(problem, budget, picks, tuning.prune_evals)

    if greedy.feasible:
        consider("pruned", prune(list(chosen)))
        alt = _effective_greedy(problem, budget, tuning.width, tuning.slack * best.evaluation.recompute_s)
        if alt is not None:
            consider("effective greedy, pruned", prune(alt))
    else:
        consider("effective greedy, pruned", prune(list(best.chosen)))
    consider(f"{best.refined or 'greedy'}, swapped", _swap(problem, budget, list(best.chosen), tuning))
    consider(f"{best.refined or 'greedy'}, repaired", _repair(problem, budget, list(best.chosen), tuning))
    best = _best_start(problem, budget, starts, best)
    retained, e = _retain(problem, budget, best.chosen, best.retained, tuning.retain_evals)
    if e.recompute_s < best.evaluation.recompute_s - _WINS_S:
        best = Solution(chosen=best.chosen, evaluation=e, feasible=True, iterations=rounds, counts=e.counts,
                        recompute_times=problem.times, srcs=problem.srcs,
                        refined=f"{best.refined or 'greedy'}, retained", retained=retained)
    return best


def _best_start(p: Problem, budget: int, starts, best: Solution) -> Solution:
    """``best``, or a start that fits the budget and costs less (or fits where ``best`` does not)."""
    for k, (chosen, retained) in enumerate(starts):
        e = evaluate(p, chosen, retained)
        if e.peak <= budget and (not best.feasible or e.recompute_s < best.evaluation.recompute_s - _WINS_S):
            best = Solution(chosen=tuple(chosen), evaluation=e, feasible=True, iterations=best.iterations,
                            counts=e.counts, recompute_times=p.times, srcs=p.srcs, refined=f"start {k}",
                            retained=tuple(retained))
    return best


def _retain(p: Problem, budget: int, chosen: Sequence[int], retained: Sequence[int],
            max_evals: int) -> tuple[tuple[int, ...], Evaluation]:
    """Retain chosen candidates that are recomputed more than once, the one wasting the most time
    first, wherever the plan stays within the budget and gets cheaper: a retained candidate is
    recomputed once, at its first need, and held from there (its cascade gone, its bytes back
    early). Every change is priced by ``evaluate``; at most ``max_evals`` of them."""
    keep = set(retained)
    best = evaluate(p, chosen, keep)
    evals = 0
    # all of them at once first: often it fits, and it is one price instead of one per candidate
    waste = {c for c in chosen if c not in keep and best.counts[c] > 1}
    if waste:
        evals += 1
        e = evaluate(p, chosen, keep | waste)
        if e.peak <= budget and e.recompute_s < best.recompute_s - _WINS_S:
            keep |= waste
            best = e
    improved = True
    while improved and evals < max_evals:
        improved = False
        waste = sorted((c for c in chosen if c not in keep and best.counts[c] > 1),
                       key=lambda c: (-(best.counts[c] - 1) * p.times[c], c))
        for c in waste:
            if evals >= max_evals:
                break
            evals += 1
            e = evaluate(p, chosen, keep | {c})
            if e.peak <= budget and e.recompute_s < best.recompute_s - _WINS_S:
                keep.add(c)
                best = e
                improved = True
                break
    return tuple(sorted(keep)), best


def _repair(p: Problem, budget: int, chosen: list[int], tuning: Tuning = DEFAULT) -> list[int]:
    """Ruin and recreate: drop one pick (the costliest first), let the exact-priced greedy add
    what the budget then needs — never the dropped one — and prune; keep the result when it
    is cheaper. One expensive replay (with its cascade) is often worth several cheap ones,
    which no single swap finds. At most ``tuning.repair_moves`` moves (a deterministic cap)."""
    width, max_moves = tuning.width, tuning.repair_moves
    best = list(chosen)
    best_t = PlanState(p, best).recompute_s
    moves = 0
    improved = True
    while improved and moves < max_moves:
        improved = False
        state = PlanState(p, best)
        order = sorted(best, key=lambda c: (state.price_remove(c)[1], c))  # most time saved first
        for out in order:
            if moves >= max_moves:
                break
            moves += 1
            rest = tuple(c for c in best if c != out)
            alt = _effective_greedy(p, budget, width, best_t, start=rest, banned=frozenset([out]))
            if alt is None:
                continue
            alt = _prune(p, budget, alt, tuning.prune_evals)
            t = PlanState(p, alt).recompute_s
            if t < best_t - _IMPROVES_S:
                best, best_t, improved = alt, t, True
                break
    return best


def reachable_floor(p: Problem) -> int:
    """The lowest predicted peak known to be reachable: :func:`~acir.analysis.problem.known_floor`,
    or where the greedy stops when asked for nothing, whichever is lower. (A plan the effective
    greedy finds can be lower still; :func:`solve` returns it when it cannot fit a budget, and
    its peak is then the one stated.)"""
    return min(known_floor(p), solve(p, 0, refine=False).evaluation.peak)
