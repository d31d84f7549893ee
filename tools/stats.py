"""``acir-stats``: what an artifact says about memory and time, as text, JSON, CSV or a plot.

A thin wrapper over :mod:`acir.viz.report` (numbers) and :mod:`acir.viz.plots` (the picture), so
that tests check the numbers in-process and this file only routes output: the summary to
standard output, or to standard error when ``--json`` owns standard output.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from acir.tools._cli import make_parser, run_cli

PROG = "acir-stats"

DESCRIPTION = """\
Summarise an acir artifact (binary or text; from FILE or standard input): nodes per
region, persistent memory and the simulated peak broken down by role, the node where the
peak happens, activations kept for the backward, and, when the artifact is profiled, time
per region, the un-instrumented iteration time, the measured peak and the simulator error;
when the artifact has a plan, the planner, its budget, predicted peak and added time, and
what it recomputes or must keep.

Without a liveness analysis (or with a stale one) the memory simulation is computed now;
the summary says so. Nothing is written back to the artifact."""

EPILOG = """\
examples:
  acir-stats step.acir
  acir-capture resnet18 -b 8 | acir-opt -p 'profile,liveness' | acir-stats --json
  acir-stats step.acir -o stats/          # stats/nodes.csv and stats/activations.csv
  acir-stats step.acir --plot memory.png  # stacked memory timeline by role (.png, .svg or .pdf)
  acir-stats step.acir --json | jq '.simulator_error'

--json prints one object to standard output (the summary goes to standard error); its
keys are stable: simulated_peak_bytes, peak_node, bytes_by_role_at_peak,
persistent_bytes_by_role, nodes_by_region, activations, and measured_peak_bytes,
simulator_error, time_by_region_s, iteration_s, profiled_time_s, profiled_over_iteration
(null when not profiled), and plan: {planner, budget_bytes, predicted_peak_bytes,
predicted_recompute_s, solve_s, no_ac_peak_bytes, floor_bytes, recomputed,
recomputed_bytes, kept_for_reason: {count, by_reason}, optimality_gap, stale, ...}
(null without a plan). Sizes are bytes, times seconds, the error and the gap fractions."""


def make_arg_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, DESCRIPTION, EPILOG)
    p.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="the artifact to read; '-' or omitted: standard input")
    p.add_argument("-o", "--output-dir", metavar="DIR", help="write nodes.csv and activations.csv to DIR (created)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout; the summary to stderr")
    p.add_argument("--plot", metavar="OUT", help="write the memory timeline plot to OUT.png, OUT.svg or OUT.pdf")
    return p


def write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    from acir.errors import StatsError

    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
    except OSError as e:
        raise StatsError(f"cannot write {path}: {e.strerror}") from None


def _body(args: argparse.Namespace) -> int:
    from acir.errors import StatsError
    from acir.ir.artifact import read_path
    from acir.viz import report

    if args.plot:  # fail on a bad extension before reading or simulating anything
        from acir.viz.plots import plot_format

        plot_format(args.plot)
    module = read_path(args.file)
    facts = report.gather(module)
    data = report.report_json(facts)
    out = sys.stderr if args.json else sys.stdout
    out.write(report.summary(data))
    if args.output_dir:
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as e:
            raise StatsError(f"cannot create {args.output_dir}: {e.strerror}") from None
        write_csv(os.path.join(args.output_dir, "nodes.csv"), report.NODE_COLUMNS, report.node_rows(facts))
        write_csv(os.path.join(args.output_dir, "activations.csv"), report.ACTIVATION_COLUMNS,
                  report.activation_rows(facts))
        print(f"wrote {os.path.join(args.output_dir, 'nodes.csv')} and activations.csv", file=sys.stderr)
    if args.plot:
        from acir.viz.plots import memory_plot

        memory_plot(facts, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, make_arg_parser(), _body, argv)


if __name__ == "__main__":
    sys.exit(main())
