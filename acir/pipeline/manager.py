"""The manager that runs a pipeline of passes and owns the analyses between them.

It does what mlir-opt does around every pass: verify the IR before the first pass and
after each one, keep the graph revision and the recorded pipeline in the header, time
passes, print the IR between passes, and on a failure keep the IR from just before the
failing pass, so that the CLI can write a reproducer.

And it keeps the analyses honest, from what each pass declares (:mod:`acir.pipeline.pass_base`):

* before a pass, every analysis in its ``requires`` must be fresh (computed at the current
  graph revision; :func:`acir.ir.analyses.require` is the one test of that), or the pass is
  refused with the pipeline that would fix it;
* when a pass changes the graph, the revision goes up by one and every analysis becomes
  stale except those the pass ``preserves`` and those it wrote while it ran, which are
  restamped; stale blocks stay in the artifact as a record (a plan that was realised) but
  no pass can require them;
* after a pass, every analysis in its ``ensures`` that is not fresh is computed by the
  pass that produces it (its key's ``producer``), so that no pass calls another.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from acir.errors import AcirError, InternalError, PassCrashed, PreconditionError, VerifyError
from acir.ir.analyses import AnalysisKey, fresh, require
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult
from acir.pipeline.syntax import format_pipeline


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


def _restamp(block: object, revision: int) -> object:
    try:
        setattr(block, "revision", revision)
        return block
    except (AttributeError, dataclasses.FrozenInstanceError):
        return dataclasses.replace(block, revision=revision)  # type: ignore[type-var]


class PassManager:
    """Runs passes in order over one module, with verification and bookkeeping around each.

    ``rederive`` makes each verification also re-derive every node's outputs on meta tensors
    (:func:`acir.ir.verify.rederive`; ignored when ``verify`` is off). The CLIs turn it on, since
    they read files a person may have edited (``--no-rederive`` opts out); it is off by default
    here, for graphs built in code, whose annotations need only be consistent, not torch's (the
    tests' hand-made fixtures, a planner's toy problem).
    Wall time is always measured (it is cheap); ``time_passes`` says the caller wants
    :meth:`timing_report`. ``keep_reproducer`` deep-copies the module before each pass so that a failure can be
    replayed; it is off by default because copying a 15k-node graph per pass is costly.
    ``producers`` maps a pass name to the pass that computes an ``ensures`` analysis (by
    default the registry's passes; tests give their own).
    """

    def __init__(self, passes: Sequence[Pass], *, verify: bool = True, rederive: bool = False,
                 print_ir_after_all: TextIO | None = None, print_ir_after_change: TextIO | None = None,
                 time_passes: bool = False, keep_reproducer: bool = False,
                 on_pass_start: Callable[[int, Pass], None] | None = None,
                 on_pass_end: Callable[[int, PassRun], None] | None = None,
                 producers: Callable[[str], Pass] | None = None) -> None:
        self.passes = list(passes)
        self.verify = verify
        self.rederive = rederive
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after_change = print_ir_after_change
        self.time_passes = time_passes
        self.keep_reproducer = keep_reproducer
        self.on_pass_start = on_pass_start
        self.on_pass_end = on_pass_end
        self.producers = producers
        self.failure: Failure | None = None
        self.runs: list[PassRun] = []
        self.verify_seconds = 0.0

    def _verify(self, module: Module) -> float:
        from acir.ir.verify import verify

        t0 = time.perf_counter()
        verify(module, rederive=self.rederive)
        dt = time.perf_counter() - t0
        self.verify_seconds += dt
        return dt

    def check_preconditions(self, index: int, p: Pass, module: Module) -> None:
        """Every analysis in ``p.requires`` must be present and computed at the current revision."""
        missing = [k for k in p.requires if k not in module.analyses]
        if len(missing) > 1 or (missing and not missing[0].producer):
            names = ", ".join(k.name for k in missing)
            them = "it" if len(missing) == 1 else "them"
            raise PreconditionError(f"{p.name} requires {names}; {self._fix(index, p, missing, them)}")
        for key in p.requires:
            fix = self._fix(index, p, [key], "it") if key in missing else ""
            require(module, key, p.name, fix)

    def _fix(self, index: int, p: Pass, missing: list[AnalysisKey], them: str) -> str:
        """Advice for analyses ``missing`` before pass ``index``: the pipeline with their producers added."""
        if not all(k.producer for k in missing):
            return f"add a pass that computes {them} before {p.name} (acir-opt --list-passes)"
        producers = [k.producer for k in missing]
        before = [q.spec() for q in self.passes[:index]]
        after = [q.spec() for q in self.passes[index:] if q.name not in producers]
        return f"add {them} before {p.name}, e.g. -p '{','.join(before + producers + after)}'"

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
            t0 = time.perf_counter()
            try:
                result = self._run_one(p, module)
            except AcirError:
                self.failure = Failure(i, p, self.passes[i:], before)
                raise
            except Exception as e:
                self.failure = Failure(i, p, self.passes[i:], before)
                raise PassCrashed(f"pass '{p.spec()}' failed: {type(e).__name__}: {e}") from e
            seconds = time.perf_counter() - t0
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

    def _run_one(self, p: Pass, module: Module) -> PassResult:
        """Run ``p``, then bring the analyses up to date: the revision, restamps and ``ensures``."""
        old_rev = module.header.revision
        old_blocks = dict(module.analyses.items())
        result = p.run(module)
        if not isinstance(result, PassResult):
            raise TypeError(f"run() returned {type(result).__name__}, not PassResult")
        if result.modified:
            module.header.revision = old_rev + 1
            for key, block in module.analyses.items():
                written = old_blocks.get(key) is not block
                if (key in p.preserves or written) and getattr(block, "revision", None) == old_rev:
                    module.analyses[key] = _restamp(block, old_rev + 1)
        stats = dict(result.stats)
        for key in p.ensures:
            if fresh(module, key) is None:
                stats.update({k: v for k, v in self._produce(key, p, module).stats.items() if k not in stats})
            if fresh(module, key) is None:
                raise InternalError(f"pass '{p.spec()}' ensures {key.name}, but it is missing or stale after it")
        return PassResult(result.modified, stats) if stats != result.stats else result

    def _produce(self, key: AnalysisKey, after: Pass, module: Module) -> PassResult:
        """Compute ``key`` with its producer pass (which must not change the graph)."""
        if not key.producer:
            raise InternalError(f"pass '{after.spec()}' ensures {key.name}, which no single pass produces")
        if self.producers is not None:
            producer = self.producers(key.producer)
        else:
            from acir.pipeline.registry import build_pipeline

            (producer,) = build_pipeline(key.producer)
        self.check_preconditions(0, producer, module)
        result = producer.run(module)
        if result.modified:
            raise InternalError(f"{producer.name} changed the graph while computing {key.name} for {after.name}")
        return result

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


__all__ = ["Failure", "PassManager", "PassRun"]
