"""Memory budgets: ``3GiB``, ``512MiB``, ``4GB``, ``123456`` bytes, or ``60%``.

Why a percentage is not simply 60% of the peak: parameters, buffers, optimizer state and
the batch live for the whole iteration, and no recomputation can shrink them. So ``60%``
means persistent memory plus 60% of the rest of the no-AC simulated peak (DESIGN.md,
"Budgets"): ``100%`` is the no-AC peak itself, and a small percentage approaches the
persistent floor. Resolving it needs those two numbers, so a :class:`Budget` stays what the
user wrote until a planner calls :meth:`Budget.resolve`.

Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers
of 1000, as in ``torch.cuda.memory_summary`` and ``nvidia-smi`` respectively.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from acir.errors import InfeasibleBudget, ParseError, infeasible_message

__all__ = ["Budget", "InfeasibleBudget", "infeasible_message", "parse_budget"]  # the last two from acir.errors

_UNITS = {"": 1, "b": 1,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
          "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4}
_BUDGET = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*|%)\s*")
_FORMS = "use bytes with a unit (3GiB, 512MiB, 4GB) or a percentage (60%)"


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
    if m is None or (unit != "%" and unit not in _UNITS):
        raise ParseError(f"bad budget {text!r}: {_FORMS}")
    number = m.group(1)
    if unit == "%":
        p = float(number)
        if not 0 < p <= 100:
            raise ParseError(f"bad budget {text!r}: a percentage must be above 0% and at most 100%")
        return Budget(percent=p)
    if "." in number:
        n = float(number) * _UNITS[unit]
        if not math.isfinite(n) or n != int(n) and unit in ("", "b"):
            raise ParseError(f"bad budget {text!r}: a byte count must be whole; {_FORMS}")
        n = round(n)
    else:
        n = int(number) * _UNITS[unit]
    if n <= 0:
        raise ParseError(f"bad budget {text!r}: it must be more than 0 bytes")
    return Budget(bytes=n)
