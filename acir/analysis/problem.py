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

    def __post_init__(self) -> None:
        k = len(self.sizes)
        for name in ("lo", "hi", "times", "temps", "srcs", "allowed"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"Problem.{name} has {len(getattr(self, name))} entries, expected {k}")
        if len(self.base_after) != len(self.base_live):
            raise ValueError("Problem.base_after and base_live differ in length")

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


def evaluate(p: Problem, chosen: Iterable[int]) -> Evaluation:
    """The predicted peak and added time of recomputing the candidates in ``chosen``."""
    chosen = set(chosen)
    bad = [i for i in chosen if not (0 <= i < p.n_candidates) or not p.allowed[i]]
    if bad:
        raise ValueError(f"candidates {sorted(bad)[:5]} are not allowed to be recomputed")
    n = len(p.base_live)
    saved = np.zeros(n + 1, dtype=np.int64)
    for i in chosen:
        if p.lo[i] < p.hi[i]:
            saved[p.lo[i]] += p.sizes[i]
            saved[p.hi[i]] -= p.sizes[i]
    saved = np.cumsum(saved)[:n]
    live = np.asarray(p.base_live, dtype=np.int64) - saved
    after = np.asarray(p.base_after, dtype=np.int64) - saved
    counts = [0] * p.n_candidates
    time = 0.0
    by_rank: dict[int, list[int]] = {}
    for i in chosen:
        by_rank.setdefault(p.hi[i], []).append(i)
    peak_rank = int(np.argmax(live)) if n else -1
    peak = int(live[peak_rank]) if n else p.persistent
    spike_peak = False
    for h in sorted(by_rank):
        members = recompute_set(p, h, by_rank[h], chosen)
        for m in members:
            counts[m] += 1
            time += p.times[m]
        before = int(after[h - 1]) if h > 0 else p.persistent
        top = before + spike_height(p, members)
        if top > peak:
            peak, peak_rank, spike_peak = top, h, True
    return Evaluation(peak, peak_rank, spike_peak, time, tuple(counts))


def recomputable_floor(p: Problem) -> int:
    """The peak with every allowed candidate recomputed: the lowest the heuristics aim for."""
    return evaluate(p, [i for i in range(p.n_candidates) if p.allowed[i]]).peak


def known_floor(p: Problem) -> int:
    """The lower of the no-AC peak and recompute-all's (recompute-all is not always lower: its
    cascades of recomputations can spike above the no-AC peak). A planner that searches can
    know a lower one (μ-TWO's :func:`~acir.passes.mutwo.solver.reachable_floor`)."""
    return min(p.no_ac_peak, recomputable_floor(p))
