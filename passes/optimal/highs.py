"""The HiGHS side of the ``optimal`` planner: a rowwise MILP in, a status, a solution and a bound out.

Apart from the model (:mod:`acir.passes.optimal.solver`) because what it handles is HiGHS's,
not the planning problem's: highspy's object model (``HighsLp`` filled field by field, the
rowwise matrix, integrality, an incumbent through ``setSolution``), its statuses mapped to
the few words the solver reports, and its banner. HiGHS prints that banner to C stdout
once per process, at the first ``Highs()``, before any option can turn output off; when
acir-opt writes the IR to stdout the banner would corrupt it, so the first construction
runs with file descriptor 1 pointed at ``/dev/null``. A solve can report how it goes (its
relative gap, through HiGHS's MIP-interrupt callback, where highspy has it) for the progress bar.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

__all__ = ["RowwiseMilp", "silent_highs", "solve_milp"]


class RowwiseMilp(Protocol):
    """A mixed-integer program in the layout HiGHS takes: columns, then rows in compressed sparse rows."""

    cost: list[float]        # per column: objective coefficient
    lower: list[float]       # per column: bounds
    upper: list[float]
    integer: list[bool]      # per column: integer (else continuous)
    row_lo: list[float]      # per row: bounds
    row_hi: list[float]
    starts: list[int]        # per row: its first entry in index/value
    index: list[int]         # per entry: column
    value: list[float]       # per entry: coefficient


_BANNER_DONE = False


def silent_highs():
    """A ``Highs`` that prints nothing, its banner included (see the module docstring)."""
    global _BANNER_DONE
    import highspy

    if _BANNER_DONE:
        h = highspy.Highs()
    else:
        import ctypes
        import os
        import sys

        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
            try:
                ctypes.CDLL(None).fflush(None)
            except (OSError, AttributeError):
                pass
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    return h


def solve_milp(m: RowwiseMilp, start: Sequence[float] | None, time_limit: float,
               rel_gap: float, on_gap: Callable[[float], None] | None = None) -> tuple[str, np.ndarray | None, float]:
    """Solve ``m`` (minimising) from the incumbent ``start``, if any, within ``time_limit`` seconds.

    Returns (status, column values or None, HiGHS's dual bound). The status is "optimal",
    "infeasible", "time limit" or HiGHS's own words; the values are there whenever HiGHS
    has a feasible solution, optimal or not. ``on_gap(gap)`` is called as the search goes
    with HiGHS's relative gap (inf before an incumbent), from the solver's thread.
    """
    import highspy

    h = silent_highs()
    h.setOptionValue("time_limit", max(time_limit, 0.01))
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("mip_abs_gap", 1e-9)
    lp = highspy.HighsLp()
    lp.num_col_ = len(m.cost)
    lp.num_row_ = len(m.row_lo)
    lp.col_cost_ = np.asarray(m.cost, dtype=np.float64)
    lp.col_lower_ = np.asarray(m.lower, dtype=np.float64)
    lp.col_upper_ = np.asarray(m.upper, dtype=np.float64)
    lp.row_lower_ = np.asarray(m.row_lo, dtype=np.float64)
    lp.row_upper_ = np.asarray(m.row_hi, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = np.asarray(m.starts + [len(m.index)], dtype=np.int32)
    lp.a_matrix_.index_ = np.asarray(m.index, dtype=np.int32)
    lp.a_matrix_.value_ = np.asarray(m.value, dtype=np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                       for b in m.integer]
    h.passModel(lp)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = start
        h.setSolution(sol)
    event = getattr(h, "cbMipInterrupt", None)  # highspy's callback events (not in the oldest releases)
    if on_gap is not None and event is not None:
        event.subscribe(lambda e: on_gap(float(e.data_out.mip_gap)))
    h.run()
    ms = h.getModelStatus()
    kind = {highspy.HighsModelStatus.kOptimal: "optimal", highspy.HighsModelStatus.kInfeasible: "infeasible",
            highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible",
            highspy.HighsModelStatus.kTimeLimit: "time limit"}.get(ms, h.modelStatusToString(ms))
    info = h.getInfo()
    x = None
    if info.primal_solution_status == 2:  # kSolutionStatusFeasible
        x = np.asarray(h.getSolution().col_value)
    return kind, x, info.mip_dual_bound
