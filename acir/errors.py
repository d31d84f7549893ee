"""Every error acir reports, in one small hierarchy, so that every CLI can print ``acir-<tool>: error: ...``.

Each error's message says what went wrong *and* how to fix it; the CLIs print it without
a traceback (``--traceback`` shows the stack) and exit 1, or 2 for a :class:`UsageError`
(a bad option, as argparse does). The classes say whose move it is:

* the user's input: :class:`ParseError`, :class:`SerdeError`, :class:`VerifyError`,
  :class:`PreconditionError`, :class:`UsageError`, :class:`InfeasibleBudget`,
  :class:`CaptureError`, :class:`RunError`, :class:`PassFailed`;
* acir's own fault: :class:`InternalError` (an invariant broke) and :class:`PassCrashed`
  (a pass raised something it did not expect), which the CLIs label "internal error".
"""

from __future__ import annotations


class AcirError(Exception):
    """Base of every error acir reports to a user."""


class ParseError(AcirError):
    """The textual form (IR text, pipeline, option, budget) could not be read."""


class SerdeError(AcirError):
    """A binary artifact could not be decoded: not acir, truncated, corrupt or too new."""


class VerifyError(AcirError):
    """The IR breaks one of its invariants."""


class PreconditionError(AcirError):
    """A pass was asked to run without what it requires (a missing or stale analysis)."""


class UsageError(AcirError):
    """A bad option, possibly only found out against the input; the CLIs exit 2, as argparse does."""


class InfeasibleBudget(AcirError):
    """A budget below the smallest peak recomputation can reach; the message states that peak."""

    def __init__(self, budget_bytes: int, floor_bytes: int, planner: str) -> None:
        super().__init__(infeasible_message(budget_bytes, floor_bytes, planner))
        self.budget_bytes, self.floor_bytes, self.planner = budget_bytes, floor_bytes, planner


class RewriteOverBudget(InfeasibleBudget):
    """Every plan fit the budget, but each rewritten step's simulated peak stayed above it (the
    rewrite kept alive what the plans did not price); ``floor_bytes`` is the lowest such peak
    reached, not the lowest reachable."""

    def __init__(self, budget_bytes: int, lowest_bytes: int, planner: str, plans: int) -> None:
        from acir.units import format_bytes

        what = "the rewritten step's simulated peak is" if plans == 1 else \
            f"after {plans} plans, each rewritten step's simulated peak is"
        AcirError.__init__(self, f"{planner}: {what} above the "
                                 f"budget {format_bytes(budget_bytes)} ({budget_bytes} B): the rewrite keeps alive "
                                 "what the plans did not price; the lowest peak reached was "
                                 f"{format_bytes(lowest_bytes)} ({lowest_bytes} B): ask for at least that (plans "
                                 "differ with the budget, so this is not a floor, and a lower budget may fit too)")
        self.budget_bytes, self.floor_bytes, self.planner = budget_bytes, lowest_bytes, planner


class PassFailed(AcirError):
    """A pass cannot do what was asked of it on this input, for the reason its message states
    (a plan made for another graph, a model it cannot rebuild, a missing option value)."""


class InternalError(AcirError):
    """An invariant of acir broke: a bug to report, not something the user did."""


class PassCrashed(InternalError):
    """A pass raised an exception it did not expect; the original is the ``__cause__``."""


class CaptureError(AcirError):
    """A model, its factory or its training step could not be captured."""


class RunError(AcirError):
    """Lowering, binding or running a captured step failed."""


class StatsError(AcirError):
    """``acir-stats`` cannot report what was asked (no such analysis, an unwritable file)."""


class VizError(AcirError):
    """A picture could not be made (no ``dot``, an unwritable file, a failed render)."""


class VizUsageError(VizError, UsageError):
    """A bad ``acir-viz`` option, possibly only detectable against the artifact; the CLI exits 2."""


class BenchError(AcirError):
    """A benchmark cannot run as configured (a bad option, a configuration that cannot be built)."""


def infeasible_message(budget_bytes: int, floor_bytes: int, planner: str) -> str:
    """Why ``planner`` cannot meet the budget, with the smallest reachable peak to raise it to."""
    from acir.units import format_bytes

    def both(n: int) -> str:
        return f"{format_bytes(n)} ({n} B)"

    return (f"{planner}: budget {both(budget_bytes)} is below the smallest peak recomputation can reach, "
            f"{both(floor_bytes)}; the smallest reachable peak is {floor_bytes} bytes \u2014 raise the budget "
            "to at least that")
