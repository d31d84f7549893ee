"""The shared evaluator, kept incrementally: price adding or dropping one candidate cheaply.

:func:`acir.analysis.problem.evaluate` prices a whole plan from scratch — O(ranks) of numpy and
a walk of every recomputation point — and judges every planner. Heuristics that try many
one-candidate changes of a plan (μ-TWO's clean-up) would call it thousands of times;
:class:`PlanState` gives them the same numbers for a small fraction of the cost. It is
``evaluate``'s model reorganised, nothing more. For the current set of recomputed
candidates it keeps:

* one array over *positions*: rank ``r``'s memory while it runs (``live[r]``) at position
  ``2r + 1``, and the recomputation spike before node ``h`` (``after[h-1]`` plus its
  height), where there is one, at position ``2h``, between ranks ``h - 1`` and ``h``. A
  candidate's savings then shift one contiguous run of positions, ``[2 lo + 1, 2 hi]`` (its
  idle ranks and the spikes that sit on them), and maxima over runs come from maxima of
  fixed blocks of positions;
* each recomputation point's members (the set :func:`~acir.analysis.problem.recompute_set`
  gives), their bytes, largest intermediates and time, and per candidate the points it is
  a member of. Dropping ``c`` changes exactly the points ``c`` is a member of (they are
  walked again without it). Adding ``c`` changes its own point and those where a member
  reads ``c`` while ``c`` is idle, and only by what ``c`` brings: ``c`` and, transitively,
  its recomputed sources that are idle there and not yet members (reachability only grows
  when ``c`` joins, and only through ``c``);
* the time as integers (every float time is an integer multiple of one power of two), so
  sums are exact in any order; and per overlap window (a collective in flight, see
  :mod:`acir.analysis.problem`) the replay time of the points inside it, so that the time a
  window hides, ``min(slack, inside)``, changes with the points a change touches.

Peaks, peak ranks and recompute counts are ``evaluate``'s exactly. The time is the exact
sum of the replay times, rounded once; ``evaluate`` adds the same times one at a time in
floating point, so the two agree to within float rounding (~1e-15 relative), not always to
the last bit. The tests check both on random problems.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from acir.analysis.problem import Evaluation, Problem

__all__ = ["PlanState"]

_NONE = -(2**62)  # a position with no recomputation spike (and the max of nothing)
_BLOCK = 128      # positions per block of the block maxima
_EMPTY: frozenset[int] = frozenset()


def _exact_times(times: Iterable[float]) -> tuple[list[int], int]:
    """The times as integers ``t * scale`` for one power of two ``scale``: exact, as floats are
    dyadic rationals."""
    ratios = []
    for t in times:
        if not math.isfinite(t):
            raise ValueError(f"recompute time {t!r} is not finite")
        ratios.append(float(t).as_integer_ratio())
    e = max((d.bit_length() - 1 for _, d in ratios), default=0)
    return [num << (e - (d.bit_length() - 1)) for num, d in ratios], 1 << e


class PlanState:
    """``evaluate(problem, chosen)`` for a set ``chosen`` changed one candidate at a time."""

    def __init__(self, p: Problem, chosen: Iterable[int] = ()) -> None:
        self.p = p
        n = len(p.base_live)
        self.n = n
        self.floor = int(p.persistent) if n == 0 else _NONE  # evaluate's peak with no ranks
        self.lo, self.hi = list(p.lo), list(p.hi)
        self.sizes, self.temps = [int(s) for s in p.sizes], [int(t) for t in p.temps]
        self.srcs = [tuple(ss) for ss in p.srcs]
        tint, self.scale = _exact_times(tuple(p.times) + tuple(s for _, _, s in p.overlaps))
        self.tint, self.slack = tint[:p.n_candidates], tint[p.n_candidates:]
        self.win = p.window_of() if p.overlaps else {}  # point rank -> overlap window
        self.inside = [0] * len(p.overlaps)  # per window: replay time of the points in it, times scale
        self.hidden = 0  # sum over windows of min(slack, inside): time the collectives hide, times scale
        self.readers: list[list[int]] = [[] for _ in range(p.n_candidates)]  # j -> candidates whose srcs hold j
        for i, ss in enumerate(self.srcs):
            for j in ss:
                self.readers[j].append(i)
        self.size = 2 * n + 1  # positions in use; v is padded to whole blocks
        self.v = np.full(-(-self.size // _BLOCK) * _BLOCK, _NONE, dtype=np.int64)
        self.v[1:self.size:2] = np.asarray(p.base_live, dtype=np.int64)
        self.after = np.asarray(p.base_after, dtype=np.int64).copy()
        self.chosen: set[int] = set()
        self.groups: dict[int, set[int]] = {}    # h -> chosen candidates first used at h
        self.members: dict[int, set[int]] = {}   # h -> what is recomputed before h
        self.member_of: list[set[int]] = [set() for _ in range(p.n_candidates)]  # c -> points c is recomputed at
        self.point: dict[int, tuple[int, int, int]] = {}  # h -> (bytes of members, largest temp, time)
        self.total = 0  # the plan's time, times scale
        for c in chosen:
            if c not in self.chosen:
                self._check(c)
                self._shift(c, -1)
                self.chosen.add(c)
                self.groups.setdefault(self.hi[c], set()).add(c)
        for h, g in self.groups.items():
            self._set_point(h, self._reach(h, g))
        self._refresh()

    # --- internals ---------------------------------------------------------------------------

    def _check(self, c: int) -> None:
        if not (0 <= c < self.p.n_candidates) or not self.p.allowed[c]:
            raise ValueError(f"candidate {c} is not allowed to be recomputed")

    def _window(self, c: int) -> tuple[int, int]:
        """Positions ``[a, b)`` that candidate ``c``'s savings shift (empty without an idle window)."""
        lo, hi = self.lo[c], self.hi[c]
        return (2 * lo + 1, 2 * hi + 1) if lo < hi else (0, 0)

    def _shift(self, c: int, sign: int) -> None:
        lo, hi = self.lo[c], self.hi[c]
        if lo < hi:
            s = sign * self.sizes[c]
            self.after[lo:hi] += s
            self.v[2 * lo + 1:2 * hi + 1] += s   # ranks lo..hi-1 and the spikes before lo+1..hi

    def _before(self, h: int) -> int:
        return int(self.after[h - 1]) if h > 0 else int(self.p.persistent)

    def _reach(self, h: int, group: Iterable[int]) -> set[int]:
        """The members of the point before ``h`` with this group (recompute_set's, as a set)."""
        srcs, lo, hi, chosen = self.srcs, self.lo, self.hi, self.chosen
        seen = set(group)
        todo = list(seen)
        while todo:
            for j in srcs[todo.pop()]:
                if j not in seen and j in chosen and lo[j] <= h < hi[j]:
                    seen.add(j)
                    todo.append(j)
        return seen

    def _brings(self, h: int, c: int, have: set[int]) -> tuple[int, int, int]:
        """What joins the point before ``h`` (whose members are ``have``) with ``c`` — ``c`` and its
        chosen sources idle at ``h``, transitively, that are not members yet (``c`` counts as
        chosen) — as (bytes, largest temp, time)."""
        srcs, lo, hi, chosen = self.srcs, self.lo, self.hi, self.chosen
        sizes, temps, tint = self.sizes, self.temps, self.tint
        size, temp, time = sizes[c], temps[c], tint[c]
        seen = {c}
        todo = [c]
        while todo:
            for j in srcs[todo.pop()]:
                if j not in seen and j not in have and j in chosen and lo[j] <= h < hi[j]:
                    seen.add(j)
                    todo.append(j)
                    size += sizes[j]
                    time += tint[j]
                    if temps[j] > temp:
                        temp = temps[j]
        return size, temp, time

    def _joins(self, h: int, c: int, have: set[int]) -> list[int]:
        """The members :meth:`_brings` counts."""
        srcs, lo, hi, chosen = self.srcs, self.lo, self.hi, self.chosen
        new = [c]
        seen = {c}
        k = 0
        while k < len(new):
            for j in srcs[new[k]]:
                if j not in seen and j not in have and j in chosen and lo[j] <= h < hi[j]:
                    seen.add(j)
                    new.append(j)
            k += 1
        return new

    def _stats(self, ms: Iterable[int]) -> tuple[int, int, int]:
        sizes, temps, tint = self.sizes, self.temps, self.tint
        return (sum(sizes[m] for m in ms), max((temps[m] for m in ms), default=_NONE),
                sum(tint[m] for m in ms))

    def _set_point(self, h: int, ms: set[int]) -> None:
        """Make ``ms`` the members of the point before ``h`` (none: no point)."""
        old = self.members.get(h, set())
        for m in old - ms:
            self.member_of[m].discard(h)
        for m in ms - old:
            self.member_of[m].add(h)
        old_t = self.point[h][2] if h in self.point else 0
        self.total -= old_t
        self._retime(h, -old_t)
        if ms:
            self.members[h] = ms
            st = self.point[h] = self._stats(ms)
            self.total += st[2]
            self._retime(h, st[2])
            self.v[2 * h] = self._before(h) + st[0] + st[1]
        else:
            self.members.pop(h, None)
            self.point.pop(h, None)
            self.v[2 * h] = _NONE

    def _retime(self, h: int, dt: int) -> None:
        """The point before ``h`` takes ``dt`` more replay time: what its overlap window hides follows."""
        w = self.win.get(h)
        if w is not None and dt:
            slack, old = self.slack[w], self.inside[w]
            self.inside[w] = old + dt
            self.hidden += min(slack, old + dt) - min(slack, old)

    def _hidden_after(self, dts: dict[int, int]) -> int:
        """:attr:`hidden` once the points ``dts`` names take that much more replay time each."""
        by: dict[int, int] = {}
        for h, dt in dts.items():
            w = self.win.get(h)
            if w is not None and dt:
                by[w] = by.get(w, 0) + dt
        hidden = self.hidden
        for w, d in by.items():
            slack, old = self.slack[w], self.inside[w]
            hidden += min(slack, old + d) - min(slack, old)
        return hidden

    def _refresh(self) -> None:
        """Rebuild the block maxima (and their prefix and suffix maxima)."""
        self.bm = self.v.reshape(-1, _BLOCK).max(axis=1)
        self.bpm = np.maximum.accumulate(self.bm)              # max of blocks 0..k
        self.bsm = np.maximum.accumulate(self.bm[::-1])[::-1]  # max of blocks k..end

    def _range_max(self, a: int, b: int) -> int:
        """max(v[a:b]) for a < b: whole blocks from the block maxima (prefix and suffix maxima
        of blocks when the range starts at 0 or runs to the end), the ragged ends directly."""
        v = self.v
        if a == 0:
            k = b // _BLOCK
            if k == 0:
                return int(v[:b].max())
            best = self.bpm[k - 1]
            return int(best if k * _BLOCK == b else max(best, v[k * _BLOCK:b].max()))
        ba = -(-a // _BLOCK)
        if b >= self.size:  # the padding past ``size`` holds no value
            if ba >= len(self.bm):
                return int(v[a:].max())
            best = self.bsm[ba]
            return int(best if a == ba * _BLOCK else max(best, v[a:ba * _BLOCK].max()))
        bb = b // _BLOCK
        if bb - ba < 2:
            return int(v[a:b].max())
        best = self.bm[ba:bb].max()
        if a < ba * _BLOCK:
            best = max(best, v[a:ba * _BLOCK].max())
        if bb * _BLOCK < b:
            best = max(best, v[bb * _BLOCK:b].max())
        return int(best)

    def _max_excluding(self, a: int, b: int, skip: list[int]) -> int:
        """max(v[a:b]) over positions not in ``skip`` (sorted); _NONE when empty."""
        best = _NONE
        start = a
        for x in skip:
            if x < start:
                continue
            if x >= b:
                break
            if start < x:
                best = max(best, self._range_max(start, x))
            start = x + 1
        if start < b:
            best = max(best, self._range_max(start, b))
        return best

    def _rest_max(self, c: int, shift: int, skip: list[int]) -> int:
        """The peak over every position but ``skip``, once ``c``'s window is shifted by ``shift``."""
        a, b = self._window(c)
        if a >= b:
            return max(self.floor, self._max_excluding(0, self.size, skip))
        inside = self._max_excluding(a, b, skip)
        return max(self.floor, self._max_excluding(0, a, skip), inside + shift if inside > _NONE else _NONE,
                   self._max_excluding(b, self.size, skip))

    def _add_points(self, c: int) -> list[int]:
        """The points ``c`` joins: its own, and those where a member reads ``c`` while it is idle."""
        lo, hi = self.lo[c], self.hi[c]
        out = [hi]
        for r in self.readers[c]:
            for h in self.member_of[r]:  # r is recomputed at h (so r is chosen)
                if lo <= h < hi and h not in out:
                    out.append(h)
        return out

    def _remove_changes(self, c: int) -> dict[int, set[int]]:
        """The points ``c`` is a member of, each with its members once ``c`` is kept (``c`` must be
        out of ``chosen`` while this runs)."""
        hi = self.hi[c]
        out = {}
        for h in self.member_of[c]:
            group = self.groups[h]
            if h == hi:
                group = group - {c}
            out[h] = self._reach(h, group) if group else set()
        return out

    # --- pricing -----------------------------------------------------------------------------

    def price_add(self, c: int) -> tuple[int, float]:
        """(peak, recompute_s) of ``evaluate(problem, chosen | {c})``."""
        if c in self.chosen:
            return self.price()
        self._check(c)
        shift = -self.sizes[c]
        a, b = self._window(c)
        # A point c joins only grows, and sits lower by at most c's size: its spike does not fall
        # below its old position's value shifted with c's window, so the maximum over every
        # position (those points included) plus the points' new spikes is the exact peak.
        peak = self._rest_max(c, shift, [])
        total = self.total
        members, point = self.members, self.point
        dts = {}
        for h in self._add_points(c):
            size, temp, time = point.get(h, (0, _NONE, 0))
            dsize, dtemp, dtime = self._brings(h, c, members.get(h, _EMPTY))
            total += dtime
            dts[h] = dtime
            before = self._before(h) + (shift if a <= 2 * h < b else 0)
            peak = max(peak, before + size + dsize + max(temp, dtemp))
        hidden = self._hidden_after(dts) if self.win else 0
        return peak, (total - hidden) / self.scale

    def price_remove(self, c: int) -> tuple[int, float]:
        """(peak, recompute_s) of ``evaluate(problem, chosen - {c})``."""
        if c not in self.chosen:
            return self.price()
        self.chosen.discard(c)
        try:
            changes = self._remove_changes(c)
        finally:
            self.chosen.add(c)
        shift = self.sizes[c]
        a, b = self._window(c)
        peak = self._rest_max(c, shift, sorted(2 * h for h in changes))
        total = self.total
        dts = {}
        for h, ms in changes.items():
            size, temp, time = self._stats(ms)
            total += time - self.point[h][2]
            dts[h] = time - self.point[h][2]
            if ms:
                before = self._before(h) + (shift if a <= 2 * h < b else 0)
                peak = max(peak, before + size + temp)
        hidden = self._hidden_after(dts) if self.win else 0
        return peak, (total - hidden) / self.scale

    def peak_bound_remove(self, c: int) -> int:
        """A lower bound on ``price_remove(c)``'s peak that walks no recomputation point:
        everything but the points ``c`` is recomputed at is known exactly."""
        if c not in self.chosen:
            return self.price()[0]
        return self._rest_max(c, self.sizes[c], sorted(2 * h for h in self.member_of[c]))

    def price(self) -> tuple[int, float]:
        """(peak, recompute_s) of the current plan."""
        return max(self.floor, int(self.bpm[-1])), (self.total - self.hidden) / self.scale

    @property
    def recompute_s(self) -> float:
        return (self.total - self.hidden) / self.scale

    def peak(self) -> tuple[int, int, bool]:
        """(peak, peak_rank, peak_is_spike), as ``evaluate`` reports them (a spike is the peak only
        when it is higher than every rank, and then the first such point)."""
        if self.n:
            live = self.v[1:self.size:2]
            rank = int(np.argmax(live))
            best = int(live[rank])
        else:
            rank, best = -1, int(self.p.persistent)
        if self.point:
            spikes = self.v[0:self.size:2]
            h = int(np.argmax(spikes))
            if int(spikes[h]) > best:
                return int(spikes[h]), h, True
        return best, rank, False

    # --- changes -----------------------------------------------------------------------------

    def add(self, c: int) -> None:
        if c in self.chosen:
            return
        self._check(c)
        changes = {h: self._joins(h, c, self.members.get(h, _EMPTY)) for h in self._add_points(c)}
        self._shift(c, -1)
        self.chosen.add(c)
        self.groups.setdefault(self.hi[c], set()).add(c)
        sizes, temps, tint = self.sizes, self.temps, self.tint
        for h, new in changes.items():
            self.members.setdefault(h, set()).update(new)
            for m in new:
                self.member_of[m].add(h)
            size, temp, time = self.point.get(h, (0, _NONE, 0))
            st = self.point[h] = (size + sum(sizes[m] for m in new), max(temp, max(temps[m] for m in new)),
                                  time + sum(tint[m] for m in new))
            self.total += st[2] - time
            self._retime(h, st[2] - time)
            self.v[2 * h] = self._before(h) + st[0] + st[1]
        self._refresh()

    def remove(self, c: int) -> None:
        if c not in self.chosen:
            return
        self.chosen.discard(c)
        changes = self._remove_changes(c)
        self._shift(c, +1)
        hi = self.hi[c]
        self.groups[hi].discard(c)
        if not self.groups[hi]:
            del self.groups[hi]
        for h, ms in changes.items():
            self._set_point(h, ms)
        self._refresh()

    def evaluation(self) -> Evaluation:
        """``evaluate(problem, chosen)``: the same peak, peak rank and counts; the time to within
        float rounding (see the module docstring)."""
        peak, rank, spike = self.peak()
        counts = tuple(len(s) for s in self.member_of)
        return Evaluation(peak, rank, spike, self.recompute_s, counts)
