"""What a pass is: a frozen dataclass whose fields are its options.

As in xDSL, a pass *is* its configuration and prints back to pipeline text
(:meth:`Pass.spec`); its options are typed fields, parsed from ``{key=value}`` text by
their declared types. A numeric option declares its valid range in its field metadata
(``metadata={"help": ..., "min": 0, "max": 10, "finite": True}``: bounds inclusive, and
``finite`` refuses nan and infinities), so that ``time-limit=-1`` or ``nan`` is refused
with one sentence when the pipeline is parsed, before any input is read, rather than
taken, or found out deep inside a solver. What a pass needs from earlier passes is declared with typed
analysis keys (``requires``, ``preserves``, ``ensures``: :mod:`acir.ir.analyses`), not
discovered at run time from a missing key, so the manager (:mod:`acir.pipeline.manager`)
can refuse a pipeline with the fix in the message and keep every analysis fresh.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from acir.errors import ParseError
from acir.ir.analyses import AnalysisKey
from acir.ir.graph import Module
from acir.pipeline.syntax import PassSpec, format_pipeline

Stat = int | float | str
OPTION_TYPES: tuple[type, ...] = (int, float, bool, str)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class PassResult:
    """What a pass reports: whether the graph changed, and counters for people."""

    modified: bool
    stats: dict[str, Stat] = field(default_factory=dict)


@dataclass(frozen=True)
class OptionInfo:
    """One option of a pass, as ``--list-passes`` shows it."""

    key: str  # as written in a pipeline: the field name in kebab-case
    field: str
    type: type
    default: object  # dataclasses.MISSING when the option is required
    help: str
    minimum: int | float | None = None  # the smallest valid value (metadata "min"), inclusive
    maximum: int | float | None = None  # the largest valid value (metadata "max"), inclusive
    finite: bool = False  # metadata "finite": nan and infinities are refused

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def valid_range(self) -> str:
        """The valid values in words ("a finite number at least 0"), or "" when any value of the type is."""
        what = {int: "an integer", float: "a finite number" if self.finite else "a number"}.get(self.type, "")
        if self.minimum is not None and self.maximum is not None:
            bounds = f" from {format_option(self.minimum)} to {format_option(self.maximum)}"
        elif self.minimum is not None:
            bounds = f" at least {format_option(self.minimum)}"
        elif self.maximum is not None:
            bounds = f" at most {format_option(self.maximum)}"
        else:
            bounds = ""
        return what + bounds if bounds or self.finite else ""

    def in_range(self, value: object) -> bool:
        """Is ``value`` (of the option's type) within the declared range? nan never is when bounded or finite."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return True
        if self.finite and not math.isfinite(value):
            return False
        if self.minimum is not None and not value >= self.minimum:
            return False
        return self.maximum is None or value <= self.maximum


def format_option(value: object) -> str:
    """An option value as pipeline text (bools as true/false, floats exactly)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse_option(pass_name: str, opt: OptionInfo, text: str) -> object:
    s = text.strip()
    try:
        if opt.type is bool:
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            raise ValueError(s)
        if opt.type is int:
            try:
                return int(s)
            except ValueError:
                return int(s, 0)  # 0x10, 0b101
        if opt.type is float:
            return float(s)
        return text
    except ValueError:
        expected = {bool: "a bool (true/false/1/0/yes/no)", int: "an int (e.g. 3 or 1_000)",
                    float: "a float (e.g. 0.5 or 1e-3)"}[opt.type]
        raise ParseError(f"pass '{pass_name}' option '{opt.key}': expected {expected}, got {text!r}") from None


@dataclass(frozen=True)
class Pass:
    """Base of every pass; subclasses are ``@dataclass(frozen=True)`` with option fields."""

    name: ClassVar[str] = ""
    #: Analyses that must be fresh before the pass runs (the manager refuses it otherwise).
    requires: ClassVar[tuple[AnalysisKey, ...]] = ()
    #: Analyses that stay valid when the pass changes the graph (the manager restamps them).
    preserves: ClassVar[tuple[AnalysisKey, ...]] = ()
    #: Analyses that are fresh after the pass: those it writes itself, and those the manager
    #: computes after it with their producer pass when the pass left them stale.
    ensures: ClassVar[tuple[AnalysisKey, ...]] = ()

    def run(self, module: Module) -> PassResult:
        """Transform or analyse ``module`` in place. Read analyses with :func:`acir.ir.analyses.require`
        or ``module.analyses[KEY]`` (the manager has checked ``requires``); never run another pass."""
        raise NotImplementedError(f"pass {type(self).__name__} does not define run()")

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def options(cls) -> list[OptionInfo]:
        """The options, in field order; a field of another type is a bug in the pass."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            t = hints[f.name]
            if t not in OPTION_TYPES:
                raise TypeError(f"pass {cls.name!r}: option {f.name!r} has type {t!r}; use int, float, bool or str")
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            md = f.metadata
            out.append(OptionInfo(f.name.replace("_", "-"), f.name, t, default, md.get("help", ""),
                                  md.get("min"), md.get("max"), bool(md.get("finite", False))))
        return out

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Pass:
        """Build the pass from option text; ``foo-bar`` and ``foo_bar`` name the same option."""
        infos = cls.options()
        by_key = {o.key: o for o in infos} | {o.field: o for o in infos}
        values: dict[str, object] = {}
        for key, text in options.items():
            opt = by_key.get(key)
            if opt is None:
                if infos:
                    valid = "; ".join(f"{o.key} ({o.type.__name__}): {o.help}" for o in infos)
                    raise ParseError(f"pass '{cls.name}' has no option '{key}'; valid options: {valid}")
                raise ParseError(f"pass '{cls.name}' has no option '{key}'; it takes no options")
            if opt.field in values:
                raise ParseError(f"pass '{cls.name}' option '{opt.key}' given twice")
            value = _parse_option(cls.name, opt, text)
            if not opt.in_range(value):
                raise ParseError(f"pass '{cls.name}' option '{opt.key}': {text.strip()!r} is out of range; "
                                 f"expected {opt.valid_range()}")
            values[opt.field] = value
        for o in infos:
            if o.required and o.field not in values:
                raise ParseError(f"pass '{cls.name}' needs option '{o.key}' ({o.help}), "
                                 f"e.g. -p '{cls.name}{{{o.key}=...}}'")
        return cls(**values)

    def to_spec(self) -> PassSpec:
        """Name and options that differ from their defaults, in field order."""
        opts = {}
        for o in self.options():
            value = getattr(self, o.field)
            if o.required or value != o.default:
                opts[o.key] = format_option(value)
        return PassSpec(self.name, opts)

    def spec(self) -> str:
        """Pipeline text for this pass, e.g. ``mutwo{budget=3GiB}``."""
        return format_pipeline([self.to_spec()])


__all__ = ["OptionInfo", "Pass", "PassResult", "Stat", "format_option"]
