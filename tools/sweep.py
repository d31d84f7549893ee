"""acir-sweep: the Pareto sweep of every planner over budgets (predicted peak vs added time)."""

from __future__ import annotations

import csv
import sys

from acir.tools._cli import make_parser, run_cli

EPILOG = """\
examples:
  acir-capture resnet18 -b 8 --image-size 64 | acir-opt -p 'profile,liveness' > r18.p.acir
  acir-sweep r18.p.acir -o sweep.csv --plot pareto.png
  acir-sweep r18.p.acir --planners mutwo,optimal --points 12 --time-limit 10

The artifact needs fresh profile and liveness analyses. Budgets run evenly from the smallest
peak recomputation can reach to the no-AC peak; keep-all, recompute-all and chen-sqrt are one
point each. Every figure is the shared simulator's prediction, not a measurement.
"""


def _body(args) -> int:
    from acir.analysis.candidates import build
    from acir.bench.sweep import PLANNERS, pareto_plot, sweep
    from acir.errors import ParseError
    from acir.ir.artifact import read_path

    planners = tuple(x.strip() for x in args.planners.split(",") if x.strip())
    unknown = [x for x in planners if x not in PLANNERS]
    if unknown or not planners:
        raise ParseError(f"unknown planner {', '.join(unknown) or '(none)'}; choose from {', '.join(PLANNERS)}")
    if args.points < 1:
        raise ParseError("--points must be at least 1")
    if args.plot and not args.plot.endswith((".png", ".svg", ".pdf")):
        raise ParseError(f"cannot tell the plot format of {args.plot}; use .png, .svg or .pdf")
    module = read_path(args.file)
    p = build(module).problem
    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            print(f"\racir-sweep: {msg}" + " " * 20, end="", file=sys.stderr, flush=True)

    points = sweep(p, planners, args.points, args.time_limit, progress)
    if tty:
        print(file=sys.stderr)
    rows = [["planner", "budget_bytes", "feasible", "predicted_peak_bytes", "predicted_recompute_s", "recomputed",
             "solve_s"]]
    rows += [[q.planner, q.budget_bytes, int(q.feasible), q.predicted_peak_bytes, f"{q.predicted_recompute_s:.9g}",
              q.recomputed, f"{q.solve_s:.4f}"] for q in points]
    out = open(args.output, "w", newline="") if args.output not in (None, "-") else sys.stdout
    try:
        csv.writer(out).writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.plot:
        prov = module.header.provenance
        pareto_plot(points, args.plot, f"{prov.model}, batch {prov.batch_size}: planners (predicted)", p.no_ac_peak)
        print(f"acir-sweep: wrote {args.plot}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = make_parser("acir-sweep", "Sweep the budget from the floor to the no-AC peak and solve it with every "
                    "planner: predicted peak, predicted added recompute time and solve time, as CSV and a plot.",
                    EPILOG)
    p.add_argument("file", nargs="?", default="-", help="a profiled artifact with liveness (default: stdin)")
    p.add_argument("--planners", default=",".join(("mutwo", "optimal", "keep-all", "recompute-all", "chen-sqrt")),
                   help="comma-separated planners (default: all)")
    p.add_argument("--points", type=int, default=8, help="budgets per budgeted planner (default 8)")
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds per optimal solve (default 30)")
    p.add_argument("-o", "--output", help="CSV file (default stdout)")
    p.add_argument("--plot", help="Pareto plot: .png, .svg or .pdf")
    return run_cli("acir-sweep", p, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
