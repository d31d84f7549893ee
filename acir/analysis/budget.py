"""Memory budgets: ``3GiB``, ``512MiB``, ``4GB``, ``123456`` bytes, or ``60%``.

Why a percentage is not simply 60% of the peak: parameters, buffers, optimizer state and
the batch live for the whole iteration, and no recomputation can shrink them. So ``60%``
means persistent memory plus 60% of the rest of the no-AC simulated peak (DESIGN.md,
"Budgets"): ``100%`` is the no-AC peak itself, and a small percentage approaches the
persistent floor. Resolving it needs those two numbers, so a :class:`Budget` stays what the
user wrote until a planner calls :meth:`Budget.resolve`.

Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers
of 1000, as in ``torch.cuda.memory_summary`` and ``nvidia-smi`` respectively.

A budget in bytes must be a whole number from 1 to :data:`MAX_BUDGET_BYTES` (2**63 - 1, the
largest ``int64``, where the plan block records it): anything larger is no budget at all,
and would only surface later as an overflow in a solver or in the artifact. Every bad budget
is one :class:`~acir.errors.ParseError` sentence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from acir.errors import InfeasibleBudget, ParseError, infeasible_message

# InfeasibleBudget and infeasible_message come from acir.errors
__all__ = ["MAX_BUDGET_BYTES", "Budget", "InfeasibleBudget", "infeasible_message", "parse_budget"]

_UNITS = {"": 1, "b": 1,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
          "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4}
_BUDGET = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*|%)\s*")
_FORMS = "use bytes with a unit (3GiB, 512MiB, 4GB) or a percentage (60%)"
#: The largest budget in bytes: the plan block stores it as an int64.
MAX_BUDGET_BYTES = 2 ** 63 - 1
_MAX_DIGITS = 40  # more digits than any budget up to MAX_BUDGET_BYTES needs, even with decimals


@dataclass(frozen=True)
class Budget:
    """A budget as written: absolute ``bytes``, or ``percent`` of what AC can act on (exactly one is set)."""

    bytes: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.bytes is None) == (self.percent is None):
            raise ValueError("a Budget has either bytes or percent, not both or neither")

    def resolve(self, persistent_bytes: int, no_ac_peak_bytes: int) -> int:
        """The budget in bytes; a percentage p is ``persistent + round(p% of (no-AC peak - persistent))``."""
        if self.bytes is not None:
            return self.bytes
        assert self.percent is not None
        return persistent_bytes + round(self.percent / 100 * (no_ac_peak_bytes - persistent_bytes))

    def __str__(self) -> str:
        if self.bytes is not None:
            return f"{self.bytes}B"
        return f"{self.percent:g}%"


def parse_budget(text: str) -> Budget:
    """Read ``3GiB``, ``512 MiB``, ``4GB``, ``1.5GiB``, ``123456``, ``123456B``, ``60%`` or ``60.5%``."""
    m = _BUDGET.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    shown = repr(text if len(text) <= 60 else text[:40] + "..." + text[-10:])
    if m is None or (unit != "%" and unit not in _UNITS):
        raise ParseError(f"bad budget {shown}: {_FORMS}")
    number = m.group(1)
    too_big = (f"bad budget {shown}: it is more than the largest budget, {MAX_BUDGET_BYTES} bytes (8 EiB); "
               f"{_FORMS}")
    if unit == "%":
        p = float(number)
        if not 0 < p <= 100:
            raise ParseError(f"bad budget {shown}: a percentage must be above 0% and at most 100%")
        return Budget(percent=p)
    if len(number.lstrip("0")) > _MAX_DIGITS:
        raise ParseError(too_big)
    if "." in number:
        x = float(number) * _UNITS[unit]
        if not math.isfinite(x) or x > MAX_BUDGET_BYTES:
            raise ParseError(too_big)
        if x != int(x) and unit in ("", "b"):
            raise ParseError(f"bad budget {shown}: a byte count must be whole; {_FORMS}")
        n = round(x)
    else:
        n = int(number) * _UNITS[unit]
    if n <= 0:
        raise ParseError(f"bad budget {shown}: it must be more than 0 bytes")
    if n > MAX_BUDGET_BYTES:
        raise ParseError(too_big)
    return Budget(bytes=n)
