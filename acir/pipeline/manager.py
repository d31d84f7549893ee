"""Passes and the manager that runs a pipeline of them.

A pass is a frozen dataclass, as in xDSL: its fields are its options, so a pass *is* its
configuration and prints back to pipeline text (:meth:`Pass.spec`). What a pass needs
from earlier passes is declared (``requires``), not discovered at run time from a
missing key, so the manager can refuse a pipeline with the fix in the message.

The manager does what mlir-opt does around every pass: verify the IR before the first
pass and after each one, keep the graph revision and the recorded pipeline in the
header, time passes, print the IR between passes, and on a failure keep the IR from just
before the failing pass, so that the CLI can write a reproducer.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TextIO

from acir.errors import AcirError, ParseError, PassCrashed, PreconditionError, VerifyError
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

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


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
    requires: ClassVar[tuple[str, ...]] = ()
    preserves: ClassVar[tuple[str, ...]] = ()

    def run(self, module: Module) -> PassResult:
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
            out.append(OptionInfo(f.name.replace("_", "-"), f.name, t, default, f.metadata.get("help", "")))
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
            values[opt.field] = _parse_option(cls.name, opt, text)
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


@dataclass(frozen=True)
class PassRun:
    """One pass run by the manager: the pass, what it reported, and its wall time."""

    pass_: Pass
    result: PassResult
    seconds: float
    verify_seconds: float = 0.0


@dataclass
class Failure:
    """Where a pipeline failed; ``before`` is the IR before the failing pass, when kept."""

    index: int
    pass_: Pass
    rest: list[Pass]  # the failing pass and every pass after it
    before: Module | None

    def pipeline(self) -> str:
        return format_pipeline([p.to_spec() for p in self.rest])


def _restamp(analysis: object, revision: int) -> object:
    try:
        setattr(analysis, "revision", revision)
        return analysis
    except (AttributeError, dataclasses.FrozenInstanceError):
        return dataclasses.replace(analysis, revision=revision)  # type: ignore[type-var]


class PassManager:
    """Runs passes in order over one module, with verification and bookkeeping around each.

    Wall time is always measured (it is cheap); ``time_passes`` says the caller wants
    :meth:`timing_report`. ``keep_reproducer`` deep-copies the module before each pass so that a failure can be
    replayed; it is off by default because copying a 15k-node graph per pass is costly.
    """

    def __init__(self, passes: Sequence[Pass], *, verify: bool = True,
                 print_ir_after_all: TextIO | None = None, print_ir_after_change: TextIO | None = None,
                 time_passes: bool = False, keep_reproducer: bool = False,
                 on_pass_start: Callable[[int, Pass], None] | None = None,
                 on_pass_end: Callable[[int, PassRun], None] | None = None) -> None:
        self.passes = list(passes)
        self.verify = verify
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after_change = print_ir_after_change
        self.time_passes = time_passes
        self.keep_reproducer = keep_reproducer
        self.on_pass_start = on_pass_start
        self.on_pass_end = on_pass_end
        self.failure: Failure | None = None
        self.runs: list[PassRun] = []
        self.verify_seconds = 0.0

    def _verify(self, module: Module) -> float:
        from acir.ir.verify import verify

        t0 = time.perf_counter()
        verify(module)
        dt = time.perf_counter() - t0
        self.verify_seconds += dt
        return dt

    def check_preconditions(self, index: int, p: Pass, module: Module) -> None:
        """Every analysis in ``p.requires`` must be present and computed at the current revision."""
        missing = [r for r in p.requires if r not in module.analyses]
        if missing:
            from acir.pipeline.registry import PASSES

            them = "it" if len(missing) == 1 else "them"
            if all(r in PASSES for r in missing):
                before = [q.spec() for q in self.passes[:index]]
                after = [q.spec() for q in self.passes[index:] if q.name not in missing]
                fix = f"add {them} before {p.name}, e.g. -p '{','.join(before + missing + after)}'"
            else:
                fix = f"add a pass that computes {them} before {p.name} (acir-opt --list-passes)"
            raise PreconditionError(f"{p.name} requires {', '.join(missing)}; {fix}")
        for r in p.requires:
            rev = getattr(module.analyses[r], "revision", None)
            if rev != module.header.revision:
                when = "it carries no revision" if rev is None else f"computed at revision {rev}"
                raise PreconditionError(f"{p.name} requires {r}, but it is stale ({when}, the graph is at "
                                        f"revision {module.header.revision}); re-run {r} before {p.name}")

    def _print_ir(self, out: TextIO, p: Pass, module: Module) -> None:
        from acir.ir.text import print_module

        out.write(f"// -----// IR after {p.spec()} //----- //\n")
        out.write(print_module(module))
        out.write("\n")
        out.flush()

    def run(self, module: Module) -> list[PassRun]:
        """Run every pass over ``module`` in place; raises the first error, with :attr:`failure` set."""
        self.failure = None
        self.runs = []
        self.verify_seconds = 0.0
        if self.verify:
            try:
                self._verify(module)
            except VerifyError as e:
                raise VerifyError(f"the input, before any pass: {e}") from e
        for i, p in enumerate(self.passes):
            self.check_preconditions(i, p, module)
            if self.on_pass_start is not None:
                self.on_pass_start(i, p)
            before = copy.deepcopy(module) if self.keep_reproducer else None
            old_rev = module.header.revision
            old_analyses = dict(module.analyses)
            t0 = time.perf_counter()
            try:
                result = p.run(module)
                if not isinstance(result, PassResult):
                    raise TypeError(f"run() returned {type(result).__name__}, not PassResult")
            except AcirError:
                self.failure = Failure(i, p, self.passes[i:], before)
                raise
            except Exception as e:
                self.failure = Failure(i, p, self.passes[i:], before)
                raise PassCrashed(f"pass '{p.spec()}' failed: {type(e).__name__}: {e}") from e
            seconds = time.perf_counter() - t0
            if result.modified:
                self._bump_revision(p, module, old_rev, old_analyses)
            module.header.pipeline.append(p.spec())
            vsec = 0.0
            if self.verify:
                try:
                    vsec = self._verify(module)
                except VerifyError as e:
                    self.failure = Failure(i, p, self.passes[i:], before)
                    raise VerifyError(f"after pass '{p.spec()}': {e}") from e
            run = PassRun(p, result, seconds, vsec)
            self.runs.append(run)
            if self.print_ir_after_all is not None:
                self._print_ir(self.print_ir_after_all, p, module)
            elif self.print_ir_after_change is not None and result.modified:
                self._print_ir(self.print_ir_after_change, p, module)
            if self.on_pass_end is not None:
                self.on_pass_end(i, run)
        return self.runs

    @staticmethod
    def _bump_revision(p: Pass, module: Module, old_rev: int, old_analyses: dict[str, object]) -> None:
        """A changed graph makes every analysis stale, except those the pass keeps valid:
        the ones it declares it preserves, and the ones it (re)computed while running."""
        module.header.revision = old_rev + 1
        for name, a in list(module.analyses.items()):
            fresh = old_analyses.get(name) is not a
            if (name in p.preserves or fresh) and getattr(a, "revision", None) == old_rev:
                module.analyses[name] = _restamp(a, old_rev + 1)

    def timing_report(self) -> str:
        """A report in the shape of mlir's ``--mlir-timing``: wall time per pass and for verification."""
        rows = [(r.pass_.spec(), r.seconds) for r in self.runs]
        if self.verify:
            rows.append(("(verify)", self.verify_seconds))
        total = sum(s for _, s in rows)
        rule = "===" + "-" * 73 + "==="
        lines = [rule, "Pass execution timing report".center(79), rule,
                 f"  Total Execution Time: {total:.4f} seconds", "",
                 "  ----Wall Time----  ----Name----"]
        for name, s in rows:
            pct = 100.0 * s / total if total > 0 else 0.0
            lines.append(f"  {s:10.4f} ({pct:5.1f}%)  {name}")
        lines.append(f"  {total:10.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"


__all__ = ["Failure", "OptionInfo", "Pass", "PassManager", "PassResult", "PassRun", "format_option"]
