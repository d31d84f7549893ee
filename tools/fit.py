"""acir-fit: the largest batch (or sequence length) whose training step fits a memory size, and its cost.

A thin CLI over :func:`acir.api.fitting.fit`: it parses the size and the limit, prints the table of
candidates, the answer and what was measured, or one JSON object.
"""

from __future__ import annotations

import json
import math
import sys

from acir.tools._cli import make_parser, run_cli

EPILOG = """\
examples:
  acir-fit resnet18 --memory 16GiB                 # the largest batch that fits 16 GiB, at any overhead
  acir-fit resnet18 --memory 16GiB --max-overhead 20       # ... recomputing at most 20% of an iteration
  acir-fit bert-tiny --memory 512MiB --seq-len 128 --json  # one JSON object: batch_size, predicted_peak_bytes, ...
  acir-fit gpt2-tiny --memory 256MiB --search seq-len -b 8 # the longest sequence at batch 8
  acir-fit my_model.py:make --memory cuda --verify         # the CUDA device's free memory; then run the answer
  acir-fit resnet50 --memory ram --multiple-of 8 --planner optimal

How it works: every candidate is captured under fake tensors (no memory), so its no-AC peak,
its floor (the smallest peak recomputation reaches) and its plan's peak come from the memory
simulator and are exact. Batch sizes grow by doubling from --multiple-of (1) up to --max-batch,
then bisect. A candidate fits when the planner's plan peaks at or below --memory and its
predicted overhead (recompute time / iteration time) is at most --max-overhead.

Times: where nothing is recomputed the overhead is 0 whatever the times; the first candidate
whose plan recomputes something is profiled for real, and the others' node times are predicted
by scaling each node's time by how much more it reads or writes (once two sizes are profiled,
along the line through both). The answer and the next candidate are then profiled for real
-- through their plan, rewritten, so the run fits --memory -- and re-planned with measured
times; the "times" column says which times each row used (predicted@N: scaled from N's
profile). --verify rewrites the answer and runs it on the real model, measuring its peak as
acir-run --measure does.

--memory is bytes with a unit (16GiB, 512MiB, 4GB), cuda (the device's free memory now; the
capture is then for CUDA) or ram (MemAvailable). A percentage is refused: of what?
Exit status: 0 with an answer; 1 when nothing fits (even the smallest candidate's floor is
over --memory) or the verified peak is over it; 2 for a bad command line.
"""


def _parser():
    from acir.api.fitting import DEFAULT_MAX
    from acir.frontend.optim import OPTIMIZERS

    p = make_parser("acir-fit", "Find the largest batch size (or sequence length) whose training step fits a memory "
                    "size with activation checkpointing, and what it costs.", EPILOG)
    p.add_argument("model", help="a zoo model (acir-capture --list-models) or path/to/file.py:make")
    p.add_argument("--memory", required=True, metavar="SIZE",
                   help="bytes with a unit (16GiB, 512MiB), cuda (free CUDA memory) or ram (available RAM)")
    p.add_argument("--max-overhead", metavar="PCT",
                   help="largest predicted recompute overhead, in percent of an iteration (20 or 20%%; default: no "
                        "limit)")
    p.add_argument("--planner", default="mutwo", choices=("mutwo", "optimal"), help="the planner (default mutwo)")
    p.add_argument("--search", default="batch", choices=("batch", "seq-len"),
                   help="what to search: the batch size (default), or the sequence length at batch -b")
    p.add_argument("-b", "--batch-size", type=int, default=None,
                   help="the fixed batch size for --search seq-len (default 2)")
    p.add_argument("--seq-len", type=int, default=0, help="sequence length for BERT/GPT-2 (default 128)")
    p.add_argument("--image-size", type=int, default=0, help="image side for ResNets (default 224)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimizer (default adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batch (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda with --memory cuda, else cpu)")
    p.add_argument("--schedule", default="interleaved", choices=("interleaved", "eager"),
                   help="optimizer schedule, as acir-capture's (default interleaved)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX,
                   help=f"the largest batch size tried (default {DEFAULT_MAX})")
    p.add_argument("--max-seq-len", type=int, default=DEFAULT_MAX,
                   help=f"the largest sequence length tried with --search seq-len (default {DEFAULT_MAX})")
    p.add_argument("--multiple-of", type=int, default=1, metavar="K",
                   help="try only multiples of K (default 1); the search starts at K")
    p.add_argument("--reps", type=int, default=3,
                   help="timed iterations of each real profile (default 3)")
    p.add_argument("--time-limit", type=float, default=30.0, metavar="S",
                   help="seconds per solve for --planner optimal (default 30)")
    p.add_argument("--no-measure", action="store_true",
                   help="profile nothing for real: times are a proxy (bytes moved), memory figures still exact")
    p.add_argument("--verify", action="store_true",
                   help="rewrite the answer's plan, run it on the real model and compare its measured peak with "
                        "--memory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def _overhead(text: str | None) -> float | None:
    from acir.errors import UsageError

    if text is None:
        return None
    t = text.strip().removesuffix("%").strip()
    try:
        pct = float(t)
    except ValueError:
        pct = math.nan
    if not (0 <= pct < math.inf):
        raise UsageError(f"--max-overhead {text!r}: give a percentage of at least 0, such as 20 or 20%")
    return pct / 100


def _b(n: int | None) -> str:
    from acir.units import format_bytes

    return "-" if n is None else format_bytes(n)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _table(r) -> list[str]:
    head = "batch" if r.search == "batch_size" else "seq-len"
    lines = [f"{head:>7}  {'no-AC peak':>11}  {'floor':>11}  {'planned peak':>12}  {'overhead':>8}  "
             f"{'times':<15}  fits"]
    for row in r.rows:
        v = row.batch_size if r.search == "batch_size" else row.seq_len
        times = row.times if row.times != "predicted" else f"predicted@{row.times_from}"
        mark = "yes" if row.fits else f"no: {row.reason}"
        if r.found and v == r.value:
            mark += "   <- answer"
        lines.append(f"{v:>7}  {_b(row.no_ac_peak_bytes):>11}  {_b(row.floor_bytes):>11}  "
                     f"{_b(row.predicted_peak_bytes):>12}  {_pct(row.predicted_overhead):>8}  {times:<15}  {mark}")
    return lines


def _report(r) -> list[str]:
    from acir.units import format_bytes, human_time

    what = "batch" if r.search == "batch_size" else "seq-len"
    fixed = (f"seq-len {r.seq_len}, " if r.search == "batch_size" and r.seq_len else
             f"batch {r.batch_size}, " if r.search == "seq_len" else "")
    fixed += f"image {r.image_size}, " if r.image_size else ""
    limit = "none" if r.max_overhead is None else f"{100 * r.max_overhead:.4g}%"
    out = [f"acir-fit: {r.model} ({fixed}{r.planner}, {r.device}) in {format_bytes(r.memory_bytes)} "
           f"({r.memory_bytes} B, {r.memory_source}); overhead limit: {limit}", ""]
    out += _table(r)
    out.append("")
    if r.found:
        out.append(f"answer: {what} {r.value}: planned peak {_b(r.predicted_peak_bytes)} ({r.predicted_peak_bytes} B) "
                   f"of {format_bytes(r.memory_bytes)}; floor {_b(r.floor_bytes)}, no-AC {_b(r.no_ac_peak_bytes)}; "
                   f"overhead {_pct(r.predicted_overhead)} ({human_time(r.predicted_recompute_s or 0.0)} recomputed "
                   f"per {human_time(r.iteration_s or 0.0)} iteration, {r.times} times)")
        if r.next is not None:
            nv = r.next.batch_size if r.search == "batch_size" else r.next.seq_len
            out.append(f"next:   {what} {nv} does not fit: {r.next.reason}")
        elif r.capped:
            out.append(f"next:   none tried: {r.value} is the largest allowed (--max-{what}); more may fit")
    else:
        first = r.rows[0].batch_size if r.search == "batch_size" else r.rows[0].seq_len
        out.append(f"answer: none: even {what} {first} needs at least {_b(r.floor_bytes)} ({r.floor_bytes} B), "
                   "its floor")
    prof = r.profiling
    if prof["profiled"]:
        values = ", ".join(str(m[r.search]) for m in r.measurements)
        out.append(f"times:  {prof['profiled']} of {prof['candidates']} candidates profiled for real ({what} {values}; "
                   f"{prof['profile_s']:.1f} s), {prof['predicted']} predicted by scaling; profiling those too would "
                   f"have taken about {prof['estimated_profile_s_saved']:.0f} s more")
    else:
        out.append("times:  none profiled for real; every candidate's times are a proxy (bytes moved)")
    for m in r.measurements:
        if m["times_before"] != "predicted":
            continue
        rec = ""
        if m["recomputed"]:
            rec = (f"; its plan's recompute {human_time(m['predicted_recompute_s'])} predicted, "
                   f"{human_time(m['same_plan_measured_recompute_s'])} with measured times")
        out.append(f"        {what} {m[r.search]}: iteration {human_time(m['predicted_iteration_s'])} predicted "
                   f"(from {what} {m['times_from']}), {human_time(m['measured_iteration_s'])} measured{rec}")
    v = r.verify
    if v is not None:
        if v.get("out_of_memory"):
            out.append(f"verify: {what} {r.value} rewritten and run: OUT OF MEMORY ({v['error']})")
        elif v["ran"]:
            verdict = "within it" if v["within"] else "OVER it"
            out.append(f"verify: {what} {r.value} rewritten and run: measured peak {_b(v['measured_peak_bytes'])} "
                       f"({v['measured_peak_bytes']} B) vs {format_bytes(r.memory_bytes)} ({r.memory_bytes} B): "
                       f"{verdict} (plan predicted {v['predicted_peak_bytes']} B); median latency "
                       f"{human_time(v['latency_s'])}")
        else:
            out.append(f"verify: not run: {v['reason']}")
    out += [f"note:   {n}" for n in r.notes]
    out.append(f"        ({r.elapsed_s:.1f} s in all, {prof['capture_s']:.1f} s of it capturing)")
    return out


def _body(args) -> int:
    from acir.api.fitting import NothingFits, fit
    from acir.errors import UsageError

    seq = args.search == "seq-len"
    if args.batch_size is not None and not seq:
        raise UsageError("-b fixes the batch for --search seq-len; the batch search finds the batch itself")
    if args.seq_len and seq:
        raise UsageError("--seq-len fixes the length for the batch search; --search seq-len finds it itself")
    for flag, n, least in (("-b", args.batch_size, 1), ("--max-batch", args.max_batch, 1),
                           ("--max-seq-len", args.max_seq_len, 1), ("--multiple-of", args.multiple_of, 1),
                           ("--reps", args.reps, 1), ("--seq-len", args.seq_len, 0),
                           ("--image-size", args.image_size, 0)):
        if n is not None and n < least:
            raise UsageError(f"{flag} must be at least {least}, not {n}")
    progress = None
    if sys.stderr.isatty() and not args.quiet:
        def progress(msg: str) -> None:
            print(f"acir-fit: {msg}", file=sys.stderr, flush=True)
    r = fit(args.model, args.memory, max_overhead=_overhead(args.max_overhead), planner=args.planner,
            search=args.search, batch_size=args.batch_size if args.batch_size is not None else 2,
            seq_len=args.seq_len, image_size=args.image_size, optimizer=args.optimizer, lr=args.lr, seed=args.seed,
            device=args.device, schedule=args.schedule, max_value=args.max_seq_len if seq else args.max_batch,
            multiple_of=args.multiple_of, reps=args.reps, measure=not args.no_measure, verify=args.verify,
            time_limit_s=args.time_limit, progress=progress)
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        print("\n".join(_report(r)))
    if not r.found:
        what = "batch" if not seq else "seq-len"
        raise NothingFits(f"nothing fits: even {what} {args.multiple_of} needs at least {r.floor_bytes} bytes "
                          f"(its floor) and --memory is {r.memory_bytes} bytes")
    if r.verify is not None and r.verify.get("ran") and not r.verify["within"]:
        peak = r.verify["measured_peak_bytes"]
        print("acir-fit: error: " + ("the answer ran out of memory when run for real" if peak is None else
                                     f"the answer's measured peak {peak} bytes is over --memory {r.memory_bytes} "
                                     "bytes"), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("acir-fit", _parser(), _body, argv)


if __name__ == "__main__":
    sys.exit(main())
