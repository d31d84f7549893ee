"""acir-run: lower an artifact to torch.fx, run training steps, check against eager, measure."""

from __future__ import annotations

import json
import sys

from acir.ir.analyses import LIVENESS, PLAN
from acir.tools._cli import add_rederive_flags, make_parser, rederive_for, run_cli

EPILOG = """\
examples:
  acir-run r18.acir                        # one training step, prints the loss
  acir-run r18.acir --check                # bit-identical to eager PyTorch from the same start?
  acir-run r18.acir --measure --iters 10   # peak memory and median latency
  acir-capture mlp | acir-opt | acir-run --check --measure --json
  acir-opt r18.p.acir -p 'mutwo{budget=60%},rewrite' -o r18.ac.acir
  acir-run r18.ac.acir --check --measure --against r18.p.acir   # AC vs no AC, one process

After a rewrite, --measure prints the measured peak beside the plan's budget and predicted
peak and the simulated peak of the rewritten graph. --against OTHER runs OTHER (the same
workload before the rewrite, say) in the same process: --check then compares the two
graphs' updates bit for bit instead of comparing with eager PyTorch, and --measure times
both, one iteration each in turn, and reports the peak and latency change.

The model, batch and optimizer are rebuilt from the artifact's provenance (same seed).
Peak memory on CPU: live tensor storages tracked at the dispatcher, each storage once,
including parameters, gradients, optimizer state and inputs; on CUDA: the allocator's
max_memory_allocated. Latency: median over --iters after --warmup, with freed memory kept in
the heap (--malloc heap-retained, the default), as a GPU caching allocator does: otherwise glibc
unmaps and re-faults big tensors every iteration and a step that saves memory looks faster than
it is. --malloc default measures glibc as configured. Every figure says which ("malloc: ...").
Progress bars go to stderr when it is a terminal (-q: none).
"""


def _parser():
    p = make_parser("acir-run", "Lower an acir artifact to a torch.fx GraphModule and run training iterations.", EPILOG)
    p.add_argument("file", nargs="?", default="-", help="artifact (binary or text); default: stdin")
    p.add_argument("--check", action="store_true", help="compare one step with eager PyTorch (exit 1 on mismatch)")
    p.add_argument("--measure", action="store_true", help="measure peak memory and median iteration latency")
    p.add_argument("--iters", type=int, default=5, help="timed iterations for --measure (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations for --measure (default 1)")
    p.add_argument("--against", metavar="OTHER",
                   help="another artifact of the same workload (e.g. before the rewrite): --check compares with it, "
                        "--measure measures both, interleaved")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--model",
                   help="rebuild from this model spec instead of the recorded one (e.g. a moved file.py:make)")
    p.add_argument("--seed", type=int, default=1234, help="RNG seed set right before each checked step (default 1234)")
    add_rederive_flags(p)
    p.add_argument("--malloc", default="heap-retained", choices=("heap-retained", "default"),
                   help="--measure on CPU: keep freed memory in the heap (default), or glibc's default behaviour")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")
    return p


def _log(args, msg: str) -> None:
    if not args.json or sys.stderr.isatty():
        print(msg, file=sys.stderr)


def _body(args) -> int:
    import torch

    from acir import progress
    from acir.errors import RunError
    from acir.frontend.rebuild import provenance_for
    from acir.ir.artifact import read_path
    from acir.ir.verify import verify

    progress.set_quiet(args.quiet)
    if args.iters < 1 or args.warmup < 0:
        raise RunError("--iters must be at least 1 and --warmup at least 0")
    if args.measure:
        from acir.runtime.measure import use_malloc

        use_malloc(args.malloc)  # before any tensor of the step exists
    module = read_path(args.file)
    verify(module, rederive=rederive_for(args, module))
    prov = provenance_for(module, args.model)
    if prov.device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("the artifact was captured for CUDA, but torch sees no CUDA device here")
    from acir.runtime.distributed import process_group

    with process_group(module, prov.device) as how:
        return _run(args, module, prov, how)


def _run(args, module, prov, how: str) -> int:
    """The body of acir-run, with the process group its collectives need (``how``, as
    :func:`acir.runtime.distributed.process_group` says)."""
    import dataclasses

    import torch

    from acir.errors import RunError
    from acir.frontend.optim import eager_step
    from acir.frontend.rebuild import rebuild as rebuild_one
    from acir.ir.artifact import read_path
    from acir.ir.verify import verify
    from acir.runtime.distributed import rank, sync_like_ddp, world_size
    from acir.runtime.lower import BoundStep, lower
    from acir.runtime.measure import measure

    distributed = how != "none"
    if how == "local" and world_size(module) > 1 and args.check:
        raise RunError(f"the step is one of {world_size(module)} data-parallel ranks: check it under "
                       f"torchrun --nproc-per-node {world_size(module)} acir-run ... (on one rank here, the gradient "
                       "average would not be DDP's)")

    def rebuild(p):
        """A rank's start: its own batch (the seed offset by its rank), DDP's parameters and buffers."""
        if not distributed:
            return rebuild_one(p)
        model, opt, loss_fn, batch = rebuild_one(dataclasses.replace(p, seed=p.seed + rank()))
        sync_like_ddp(model)
        return model, opt, loss_fn, batch

    gm = lower(module)
    other = other_gm = None
    if args.against:
        other = read_path(args.against)
        verify(other, rederive=rederive_for(args, other))
        _same_workload(module, other, args.against)
        other_gm = lower(other)
    result: dict = {"model": prov.model, "batch_size": prov.batch_size, "nodes": len(module.graph.nodes),
                    "device": prov.device, "pipeline": list(module.header.pipeline)}
    result.update(_predictions(module))
    status = 0
    if args.check:
        from acir.runtime.check import check_against_eager

        built: dict = {}

        def make():
            model, opt, loss_fn, batch = built["last"] = rebuild(prov)
            return model, opt, loss_fn, batch

        def run_acir(model, opt, batch):
            return BoundStep(module, model, opt, gm)(batch)

        def run_other(model, opt, batch):
            return BoundStep(other, model, opt, other_gm)(batch)

        def run_ddp(model, opt, batch):  # PyTorch's DistributedDataParallel, default settings, eagerly
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            return eager_step(ddp, opt, built["last"][2], batch, prov.clip_grad_norm or None)

        reference = run_other if other is not None else run_ddp if distributed else None
        name = f"{args.against}" if other is not None else "DistributedDataParallel" if distributed else "eager"
        report = check_against_eager(make, run_acir, args.seed, reference, name, prov.clip_grad_norm or None,
                                     max(prov.accumulate, 1))
        result.update(check="ok" if report.ok else "mismatch", max_abs_diff=report.max_abs_diff,
                      loss=report.loss_acir, compared=report.compared)
        if not report.ok:
            result["worst"] = [d.__dict__ for d in report.worst[:10]]
            status = 1
        _log(args, report.summary())
    if args.measure and other is None:
        model, opt, _, batch = rebuild(prov)
        step = BoundStep(module, model, opt, gm)
        persistent = lambda: step.inputs(batch)  # noqa: E731
        m = measure(lambda: step(batch), persistent, args.iters, args.warmup, prov.device)
        result.update(peak_bytes=m.peak_bytes, latency_s=m.latency_s, latencies_s=list(m.latencies_s),
                      malloc=m.malloc, iters=args.iters, warmup=args.warmup)
        _log(args, f"measure: peak {m.peak_bytes / 2**20:.1f} MiB ({m.peak_bytes} bytes, live tensor storages), "
                   f"median latency {m.latency_s * 1e3:.1f} ms over {args.iters} iterations "
                   f"(malloc: {m.malloc})")
        _log_predictions(args, result)
    elif args.measure:
        result.update(_measure_pair(args, prov, module, gm, other, other_gm))
    if not args.check and not args.measure:
        model, opt, _, batch = rebuild(prov)
        torch.manual_seed(args.seed)
        loss = BoundStep(module, model, opt, gm)(batch)
        result["loss"] = float(loss)
        _log(args, f"one training step: loss {float(loss):.6g}")
    if args.json:
        print(json.dumps(result))
    return status


def _same_workload(a, b, name: str) -> None:
    from acir.errors import RunError

    pa, pb = a.header.provenance, b.header.provenance
    if (pa.model, pa.batch_size, pa.seq_len, pa.image_size, pa.optimizer) != \
            (pb.model, pb.batch_size, pb.seq_len, pb.image_size, pb.optimizer):
        raise RunError(f"{name} is another workload ({pb.model} batch {pb.batch_size}, {pb.optimizer}) than the "
                       f"artifact ({pa.model} batch {pa.batch_size}, {pa.optimizer}); "
                       "--against needs the same workload")
    inputs = lambda m: [(i.kind, i.name) for i in m.graph.inputs]  # noqa: E731
    if inputs(a) != inputs(b):
        raise RunError(f"{name} takes other graph inputs than the artifact; --against needs the same workload")


def _predictions(module) -> dict:
    """What the artifact's analyses predict: the plan's budget and peak, the simulated peak."""
    out: dict = {}
    plan = module.analyses.get(PLAN)
    if plan is not None:
        out.update(planner=plan.planner, budget_bytes=plan.budget_bytes,
                   predicted_peak_bytes=plan.predicted_peak_bytes, no_ac_peak_bytes=plan.no_ac_peak_bytes,
                   recomputed=len(plan.recomputed()))
    live = module.analyses.get(LIVENESS)
    if live is not None and live.revision == module.header.revision:
        out["simulated_peak_bytes"] = live.simulated_peak_bytes
    out["recompute_nodes"] = sum(1 for n in module.graph.nodes if n.recompute_of is not None)
    return out


def _mib(b: int) -> str:
    return f"{b / 2**20:.1f} MiB"


def _log_predictions(args, r: dict) -> None:
    parts = []
    if "budget_bytes" in r:
        parts.append(f"budget {_mib(r['budget_bytes'])}")
        parts.append(f"plan predicted {_mib(r['predicted_peak_bytes'])}")
    if "simulated_peak_bytes" in r:
        parts.append(f"simulated {_mib(r['simulated_peak_bytes'])}")
    if parts and "peak_bytes" in r:
        verdict = ""
        if "budget_bytes" in r:
            verdict = "; within the budget" if r["peak_bytes"] <= r["budget_bytes"] else "; OVER the budget"
        _log(args, f"         measured {_mib(r['peak_bytes'])} vs {', '.join(parts)}{verdict}")


def _measure_pair(args, prov, module, gm, other, other_gm) -> dict:
    """Peak of each, then latencies interleaved (one iteration of each in turn)."""
    import statistics

    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import malloc_setting, measure_interleaved, measure_peak

    steps, peaks = {}, {}
    for name, mod, g in (("acir", module, gm), ("against", other, other_gm)):
        model, opt, _, batch = rebuild(prov)
        step = BoundStep(mod, model, opt, g)
        peaks[name] = measure_peak(lambda s=step, b=batch: s(b), step.inputs(batch), prov.device)
        steps[name] = lambda s=step, b=batch: s(b)
    times, cpu_times = measure_interleaved(steps, args.iters, args.warmup, prov.device)
    lat = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
    r = dict(peak_bytes=peaks["acir"], latency_s=lat["acir"], latencies_s=times["acir"],
             against_peak_bytes=peaks["against"], against_latency_s=lat["against"],
             against_latencies_s=times["against"], peak_change=peaks["acir"] / peaks["against"] - 1,
             latency_change=lat["acir"] / lat["against"] - 1, cpu_s=cpu["acir"], against_cpu_s=cpu["against"],
             cpu_change=cpu["acir"] / cpu["against"] - 1 if cpu["against"] else 0.0, malloc=malloc_setting(),
             iters=args.iters, warmup=args.warmup)
    _log(args, f"measure: peak {_mib(r['peak_bytes'])} ({r['peak_bytes']} bytes) vs {_mib(r['against_peak_bytes'])} "
               f"for {args.against} ({100 * r['peak_change']:+.1f}%); median latency {lat['acir'] * 1e3:.1f} ms vs "
               f"{lat['against'] * 1e3:.1f} ms ({100 * r['latency_change']:+.1f}%; CPU time "
               f"{100 * r['cpu_change']:+.1f}%), interleaved over {args.iters} iterations (malloc: {r['malloc']})")
    _log_predictions(args, {**_predictions(module), **r})
    return r


def main(argv: list[str] | None = None) -> int:
    return run_cli("acir-run", _parser(), _body, argv)


if __name__ == "__main__":
    sys.exit(main())
