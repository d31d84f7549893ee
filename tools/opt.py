"""``acir-opt``: run a pipeline of passes over an artifact, as mlir-opt does over MLIR.

A thin wrapper: the pipeline is parsed and every pass built *before* the input is read,
so a typo fails in milliseconds; the work is :class:`acir.pipeline.manager.PassManager`'s.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TextIO

from acir.errors import AcirError, SerdeError
from acir.ir.graph import Module
from acir.pipeline.manager import Failure, PassManager
from acir.pipeline.pass_base import Pass
from acir.tools._cli import add_rederive_flags, make_parser, rederive_for, run_cli

PROG = "acir-opt"

DESCRIPTION = """\
Run a pipeline of passes over an acir artifact (binary or text; from FILE or standard
input) and write the result (binary by default) to -o OUT or standard output.

The pipeline uses mlir-opt's syntax: pass names separated by commas, each with optional
{key=value,...} options, e.g. 'profile{reps=5},liveness,mutwo{budget=2GiB},rewrite'.
The IR is verified before the first pass and after each one (--no-verify to skip), and
every pass run is recorded in the artifact's header. An empty pipeline just verifies
and re-emits the input. --list-passes shows every pass with its options."""

EPILOG = """\
examples:
  acir-capture resnet18 -b 2 | acir-opt -p 'dce' --emit=text | head
  acir-opt step.acir -p 'dce' -o step.dce.acir
  acir-opt step.acir --pass dce --print-ir-after-change 2>changes.txt >/dev/null
  acir-opt step.acir -p 'profile{reps=5},liveness,mutwo{budget=2GiB}' --time-passes -o planned.acir
  acir-opt step.acir -p 'dce' --reproducer crash.acir.txt   # on failure: the IR before the failing pass
  acir-opt step.acir -p 'profile,liveness' --emit=onnx -o step.onnx   # open in Netron (docs/onnx.md)
  acir-opt --list-passes"""


def make_arg_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, DESCRIPTION, EPILOG)
    p.add_argument("input", nargs="?", metavar="FILE", help="the artifact to read; '-' or omitted: standard input")
    p.add_argument("-p", "--pipeline", default="", metavar="PIPELINE",
                   help="passes to run, e.g. 'dce' or 'liveness,mutwo{budget=2GiB}' (default: none)")
    p.add_argument("--pass", dest="extra", action="append", default=[], metavar="NAME",
                   help="run pass NAME (options allowed: 'NAME{k=v}') after the -p pipeline; repeatable")
    p.add_argument("-o", "--output", metavar="OUT", help="where to write the result (default: standard output)")
    p.add_argument("--emit", choices=("binary", "text", "onnx"), default="binary",
                   help="output form (default: binary); onnx: the annotated graph as an ONNX model to browse "
                        "in Netron, not read back by any tool (docs/onnx.md)")
    p.add_argument("--no-verify", action="store_true", help="do not verify the IR before and between passes")
    add_rederive_flags(p)
    p.add_argument("--print-ir-after-all", action="store_true", help="print the text IR after every pass to stderr")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the text IR to stderr after each pass that changed the graph")
    p.add_argument("--time-passes", action="store_true", help="report wall time per pass (and verify) on stderr")
    p.add_argument("--list-passes", action="store_true", help="list the passes with their options and exit")
    p.add_argument("--reproducer", metavar="FILE",
                   help="if a pass fails, write the IR from before it (text) and the rest of the pipeline to FILE")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars on stderr (there are none unless stderr is a terminal)")
    return p


def list_passes(out: TextIO) -> None:
    """Every registered pass: summary, analyses it requires/preserves/ensures, options with types and defaults."""
    from acir.pipeline.registry import names, pass_class

    for name in names():
        try:
            cls = pass_class(name)
        except Exception as e:  # one broken pass must not hide the others
            out.write(f"{name}\n    (unavailable: {type(e).__name__}: {e})\n")
            continue
        out.write(f"{name}\n    {cls.summary()}\n")
        keys = {"requires": cls.requires, "preserves": cls.preserves, "ensures": cls.ensures}
        out.write("   " + "".join(f" {what}: {', '.join(k.name for k in ks) or '-'}   " for what, ks in keys.items())
                  .rstrip() + "\n")
        if not cls.options():
            out.write("    options: none\n")
        for o in cls.options():
            default = "required" if o.required else f"default {_show_default(o.default)}"
            out.write(f"    {o.key}: {o.type.__name__} ({default})  {o.help}\n")


def _show_default(value: object) -> str:
    from acir.pipeline.pass_base import format_option

    text = format_option(value)
    return repr(text) if isinstance(value, str) else text


def _quote(s: str) -> str:
    """Single-quote for a POSIX shell, always (the reproduce line shows -p '...')."""
    return "'" + s.replace("'", "'\"'\"'") + "'"


def write_reproducer(path: str, failure: Failure) -> str:
    """Write the IR before the failing pass, as text, headed by the command that replays it."""
    from acir.ir.text import print_module

    assert failure.before is not None, "run the PassManager with keep_reproducer=True"
    command = f"acir-opt {shlex.quote(path)} -p {_quote(failure.pipeline())}"
    text = f"# reproduce: {command}\n" + print_module(failure.before)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise SerdeError(f"cannot write the reproducer {path}: {e.strerror}") from None
    return command


def build_passes(args: argparse.Namespace) -> list[Pass]:
    from acir.pipeline.registry import build_pipeline

    passes = build_pipeline(args.pipeline)
    for extra in args.extra:
        passes.extend(build_pipeline(extra))
    return passes


def _body(args: argparse.Namespace) -> int:
    from acir import progress
    from acir.ir.artifact import read_path, write_path

    progress.set_quiet(args.quiet)
    if args.list_passes:
        list_passes(sys.stdout)
        return 0
    passes = build_passes(args)
    if args.output in (None, "-") and args.emit == "binary" and sys.stdout.isatty():
        raise SerdeError("refusing to write a binary artifact to a terminal; use -o FILE, a pipe, or --emit=text")
    if args.output in (None, "-") and args.emit == "onnx" and sys.stdout.isatty():
        raise SerdeError("refusing to write an ONNX model (binary) to a terminal; use -o FILE.onnx or a pipe")
    module = read_path(args.input)
    pm = PassManager(passes, verify=not args.no_verify, rederive=rederive_for(args, module),
                     print_ir_after_all=sys.stderr if args.print_ir_after_all else None,
                     print_ir_after_change=sys.stderr if args.print_ir_after_change else None,
                     time_passes=args.time_passes, keep_reproducer=args.reproducer is not None)
    try:
        pm.run(module)
    except AcirError:
        _report_failure(args, pm.failure)
        raise
    finally:
        if args.time_passes:
            sys.stderr.write(pm.timing_report())
    _warn_over_budget(module)
    if args.emit == "onnx":
        _write_onnx(module, args.output)
    else:
        write_path(module, args.output, args.emit)
    return 0


def _warn_over_budget(module: Module) -> None:
    """Say so when a rewritten step's simulated peak is over the budget its plan was made to (the
    rewrite kept alive what the plan did not price: a sharded step's gathered parameter read by a
    replay); ``acir.compile`` plans again in that case, a pipeline runs as written."""
    from acir.ir.analyses import LIVENESS, PLAN
    from acir.units import format_bytes

    plan, live = module.analyses.get(PLAN), module.analyses.get(LIVENESS)
    if plan is None or live is None or live.revision == plan.revision or not plan.budget_bytes:
        return  # no plan, or no liveness of the rewritten graph to judge it by
    if live.simulated_peak_bytes > plan.budget_bytes:
        print(f"{PROG}: warning: the rewritten step's simulated peak, {format_bytes(live.simulated_peak_bytes)} "
              f"({live.simulated_peak_bytes} B), is over the plan's budget, {format_bytes(plan.budget_bytes)} "
              f"({plan.budget_bytes} B): the rewrite keeps alive what the plan did not price; plan to a lower "
              "budget (acir.compile does that itself)", file=sys.stderr)


def _write_onnx(module: Module, path: str | None) -> None:
    """Write the ONNX picture of ``module`` (:mod:`acir.viz.onnx_export`) to ``path`` (``None``, ``"-"``: stdout)."""
    from acir.viz.onnx_export import onnx_bytes

    data = onnx_bytes(module)
    if path in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SerdeError(f"cannot write {path}: {e.strerror}") from None


def _report_failure(args: argparse.Namespace, failure: Failure | None) -> None:
    """After a pass failed (not a pipeline or input error): the reproducer, or how to get one."""
    if failure is None:
        return
    if args.reproducer is None:
        print(f"{PROG}: note: re-run with --reproducer FILE to save the IR from before "
              f"'{failure.pass_.spec()}' with the rest of the pipeline", file=sys.stderr)
        return
    try:
        command = write_reproducer(args.reproducer, failure)
    except AcirError as e:  # the pass failure is the news; this is a footnote to it
        print(f"{PROG}: note: {e}", file=sys.stderr)
        return
    print(f"{PROG}: wrote the IR from before '{failure.pass_.spec()}' to {args.reproducer}; "
          f"replay with: {command}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, make_arg_parser(), _body, argv)


__all__ = ["build_passes", "list_passes", "main", "make_arg_parser", "write_reproducer"]
