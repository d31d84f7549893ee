"""The recomputation problem as plain arrays, and the one evaluator every planner is judged by.

Planners (μ-TWO, the MILP optimum, the baselines) see no IR: :mod:`acir.analysis.candidates`
reduces an annotated graph to a :class:`Problem`, and :func:`evaluate` tells what a set of
recomputed candidates costs — predicted peak and added run time — under the same model
for all of them, so that their plans compare on equal terms.

The model (it is what the rewrite pass implements):

* Without recomputation, memory over the node order is the liveness simulator's timeline:
  ``base_live[r]`` while node ``r`` runs, ``base_after[r]`` after its releases.
* Candidate ``i`` (an activation: a storage made in the forward and read in the backward)
  has ``size`` bytes and an idle window ``[lo, hi)``: ``lo`` is the first rank after its
  last forward use, ``hi`` its first backward use. Recomputing it frees its bytes over the
  window; it is recomputed just before node ``hi`` and lives on from there as before.
* Its recomputation runs its forward chain (``time`` seconds, ``temp`` bytes of
  intermediates that are not kept) from its sources ``srcs``. A source that is itself
  recomputed and still in its own idle window at ``hi`` is dead then, so it is recomputed
  there too, transiently, and freed when that point is done: it is recomputed once more
  (μ-TWO's recompute count, Capuchin's bookkeeping). This nests through sources.
* Everything recomputed before one node — the tensors first used there and, transitively,
  their dead recomputed sources, each once — forms one recomputation point. Its spike is
  ``after[h-1]`` (with the plan's savings) plus all of those tensors plus the largest
  replay's intermediates: a bound the rewrite's real schedule never exceeds.

The predicted peak is the maximum over ranks and spikes; it is exact for plans the
rewrite can realise and what ``mutwo{budget=...}`` must keep within the budget.

The added time is the replays' times, less what collectives hide (data parallelism: a
gradient bucket's all-reduce runs while the backward goes on, and its wait blocks only for
what the backward did not cover). An *overlap window* ``(first, last, slack)`` says that a
collective is in flight before nodes ``first..last`` and that its wait was measured blocking
``slack`` seconds: recomputation points in that window run while the collective does, and
up to ``slack`` seconds of them cost nothing (the wait shrinks by as much). Windows do not
overlap one another; without any (one process, or a profile without collectives) the time
is the plain sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Problem:
    base_live: tuple[int, ...]      # bytes while each rank runs, nothing recomputed
    base_after: tuple[int, ...]     # bytes after each rank's releases, nothing recomputed
    persistent: int                 # bytes of graph inputs (never freed)
    sizes: tuple[int, ...]          # per candidate: storage bytes
    lo: tuple[int, ...]             # per candidate: first rank of the idle window
    hi: tuple[int, ...]             # per candidate: first backward use (window is [lo, hi))
    times: tuple[float, ...]        # per candidate: run time of one recomputation from its sources
    temps: tuple[int, ...]          # per candidate: bytes of that recomputation's intermediates
    srcs: tuple[tuple[int, ...], ...]  # per candidate: candidate indices its recomputation reads
    allowed: tuple[bool, ...]       # per candidate: False = must be kept
    # (first, last, slack_s): points before nodes first..last run while a collective is in flight,
    # whose wait blocked slack_s seconds; disjoint, in rank order (module docstring)
    overlaps: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self) -> None:
        k = len(self.sizes)
        for name in ("lo", "hi", "times", "temps", "srcs", "allowed"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"Problem.{name} has {len(getattr(self, name))} entries, expected {k}")
        if len(self.base_after) != len(self.base_live):
            raise ValueError("Problem.base_after and base_live differ in length")
        end = -1
        for first, last, slack in self.overlaps:
            if not (end < first <= last) or not (slack >= 0):
                raise ValueError(f"Problem.overlaps: window ({first}, {last}, {slack}) is empty, negative or "
                                 "overlaps the one before it")
            end = last

    def window_of(self) -> dict[int, int]:
        """Rank of a recomputation point -> the overlap window it falls in (ranks in none are absent)."""
        return {h: w for w, (first, last, _) in enumerate(self.overlaps) for h in range(first, last + 1)}

    @property
    def n_candidates(self) -> int:
        return len(self.sizes)

    @property
    def no_ac_peak(self) -> int:
        return max(self.base_live) if self.base_live else self.persistent

    def covers(self, i: int, rank: int) -> bool:
        """Is candidate ``i``, when recomputed, absent from memory at ``rank``?"""
        return self.lo[i] <= rank < self.hi[i]


@dataclass(frozen=True)
class Evaluation:
    peak: int
    peak_rank: int          # the rank at (or just before, for a recomputation spike) the peak
    peak_is_spike: bool     # the peak happens while recomputing before node ``peak_rank``
    recompute_s: float
    counts: tuple[int, ...]  # per candidate: recomputations (0 when kept)


def recompute_set(p: Problem, h: int, group: Iterable[int], chosen: set[int]) -> list[int]:
    """What is recomputed just before node ``h``: ``group`` (the chosen candidates whose first
    backward use is ``h``) and, transitively, their recomputed sources that are dead at ``h``
    — each exactly once, however many of the group read it."""
    order = sorted(group)
    seen = set(order)
    k = 0
    while k < len(order):
        for j in p.srcs[order[k]]:
            if j not in seen and j in chosen and p.covers(j, h):
                seen.add(j)
                order.append(j)
        k += 1
    return order


def spike_height(p: Problem, members: list[int]) -> int:
    """Bytes a recomputation point adds above what it sits on: every tensor it recomputes
    (the dead sources are held until the point is done) plus the largest replay's intermediates."""
    if not members:
        return 0
    return sum(p.sizes[m] for m in members) + max(p.temps[m] for m in members)


@dataclass(frozen=True)
class Point:
    """One recomputation point: what is recomputed just before node ``rank``."""

    rank: int
    persistent: tuple[int, ...]  # recomputed here and kept from here on (their own point, or retained)
    transient: tuple[int, ...]   # dead sources recomputed here for this point only, freed when it is done

    @property
    def members(self) -> tuple[int, ...]:
        return self.persistent + self.transient


@dataclass(frozen=True)
class Schedule:
    """Where every recomputed candidate is recomputed: the model's answer for one plan."""

    points: tuple[Point, ...]        # in rank order
    start: dict[int, int]            # candidate -> the rank it is back in memory from (its persistent point)
    counts: tuple[int, ...]          # per candidate: how many times it is recomputed


def schedule(p: Problem, chosen: Iterable[int], retained: Iterable[int] = ()) -> Schedule:
    """The recomputation points of a plan (the module docstring's model).

    A chosen candidate ``c`` is recomputed, and kept from then on, at its first backward use
    ``hi[c]`` — or, when it is *retained*, at the first point where a replay reads it while it
    is idle, if that comes earlier: one replay then serves every later use (a checkpointed
    block's forward, replayed once at the start of its backward). A chosen source that is
    idle at a point and not retained is recomputed there transiently, and again wherever else
    it is needed (the cascade). One walk over the chosen candidates, readers before their
    sources, settles every point."""
    chosen = set(chosen)
    retained = set(retained) & chosen
    bad = [i for i in chosen if not (0 <= i < p.n_candidates) or not p.allowed[i]]
    if bad:
        raise ValueError(f"candidates {sorted(bad)[:5]} are not allowed to be recomputed")
    from graphlib import CycleError, TopologicalSorter

    readers: dict[int, list[int]] = {}
    for j in chosen:
        for i in p.srcs[j]:
            if i in chosen:
                readers.setdefault(i, []).append(j)
    try:  # readers before their sources: the order in which every point a source is needed at is known
        order = list(TopologicalSorter({c: readers.get(c, ()) for c in sorted(chosen)}).static_order())
    except CycleError as e:
        raise ValueError(f"candidates read each other in a cycle: {e.args[1]}") from None
    at: dict[int, list[int]] = {}          # candidate -> every rank it is recomputed at (its start first)
    start: dict[int, int] = {}
    for c in order:
        needs = sorted({q for j in readers.get(c, ()) for q in at[j] if p.lo[c] <= q < p.hi[c]})
        if c in retained and needs:
            start[c] = needs[0]
            at[c] = [needs[0]]
        else:
            start[c] = p.hi[c]
            at[c] = [p.hi[c]] + needs
    persistent: dict[int, list[int]] = {}
    transient: dict[int, list[int]] = {}
    for c, ranks in at.items():
        persistent.setdefault(ranks[0], []).append(c)
        for q in ranks[1:]:
            transient.setdefault(q, []).append(c)
    points = tuple(Point(h, tuple(sorted(persistent.get(h, ()))), tuple(sorted(transient.get(h, ()))))
                   for h in sorted(set(persistent) | set(transient)))
    counts = [0] * p.n_candidates
    for c, ranks in at.items():
        counts[c] = len(ranks)
    return Schedule(points, start, tuple(counts))


def evaluate(p: Problem, chosen: Iterable[int], retained: Iterable[int] = ()) -> Evaluation:
    """The predicted peak and added time of recomputing the candidates in ``chosen`` (those in
    ``retained`` recomputed once, at their first need, and kept: :func:`schedule`)."""
    s = schedule(p, chosen, retained)
    n = len(p.base_live)
    saved = np.zeros(n + 1, dtype=np.int64)
    for i, begin in s.start.items():
        if p.lo[i] < begin:
            saved[p.lo[i]] += p.sizes[i]
            saved[begin] -= p.sizes[i]
    saved = np.cumsum(saved)[:n]
    live = np.asarray(p.base_live, dtype=np.int64) - saved
    after = np.asarray(p.base_after, dtype=np.int64) - saved
    time = 0.0
    peak_rank = int(np.argmax(live)) if n else -1
    peak = int(live[peak_rank]) if n else p.persistent
    spike_peak = False
    window = p.window_of() if p.overlaps else {}
    covered = [0.0] * len(p.overlaps)  # replay time inside each overlap window
    for pt in s.points:
        for m in pt.members:
            time += p.times[m]
        if pt.rank in window:
            covered[window[pt.rank]] += sum(p.times[m] for m in pt.members)
        h = pt.rank
        before = int(after[h - 1]) if h > 0 else p.persistent
        top = before + spike_height(p, list(pt.members))
        if top > peak:
            peak, peak_rank, spike_peak = top, h, True
    for (_, _, slack), t in zip(p.overlaps, covered):
        time -= min(slack, t)
    return Evaluation(peak, peak_rank, spike_peak, time, s.counts)


def recomputable_floor(p: Problem) -> int:
    """The peak with every allowed candidate recomputed: the lowest the heuristics aim for."""
    return evaluate(p, [i for i in range(p.n_candidates) if p.allowed[i]]).peak


def known_floor(p: Problem) -> int:
    """The lower of the no-AC peak and recompute-all's (recompute-all is not always lower: its
    cascades of recomputations can spike above the no-AC peak). A planner that searches can
    know a lower one (μ-TWO's :func:`~acir.passes.mutwo.solver.reachable_floor`)."""
    return min(p.no_ac_peak, recomputable_floor(p))
