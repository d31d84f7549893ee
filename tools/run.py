"""acir-run: lower an artifact to torch.fx, run training steps, check against eager, measure."""

from __future__ import annotations

import json
import sys

from acir.tools._cli import make_parser, run_cli

EPILOG = """\
examples:
  acir-run r18.acir                        # one training step, prints the loss
  acir-run r18.acir --check                # bit-identical to eager PyTorch from the same start?
  acir-run r18.acir --measure --iters 10   # peak memory and median latency
  acir-capture mlp | acir-opt | acir-run --check --measure --json

The model, batch and optimizer are rebuilt from the artifact's provenance (same seed).
Peak memory on CPU: live tensor storages tracked at the dispatcher, each storage once,
including parameters, gradients, optimizer state and inputs; on CUDA: the allocator's
max_memory_allocated. Latency: median over --iters after --warmup; on CPU say which malloc
setting a figure used (set GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
to keep freed memory in the heap, as a GPU caching allocator does).
"""


def _parser():
    p = make_parser("acir-run", "Lower an acir artifact to a torch.fx GraphModule and run training iterations.", EPILOG)
    p.add_argument("file", nargs="?", default="-", help="artifact (binary or text); default: stdin")
    p.add_argument("--check", action="store_true", help="compare one step with eager PyTorch (exit 1 on mismatch)")
    p.add_argument("--measure", action="store_true", help="measure peak memory and median iteration latency")
    p.add_argument("--iters", type=int, default=5, help="timed iterations for --measure (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations for --measure (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--model", help="rebuild from this model spec instead of the recorded one (e.g. a moved file.py:make)")
    p.add_argument("--seed", type=int, default=1234, help="RNG seed set right before each checked step (default 1234)")
    return p


def _log(args, msg: str) -> None:
    if not args.json or sys.stderr.isatty():
        print(msg, file=sys.stderr)


def _body(args) -> int:
    import torch

    from acir.artifact import read_path
    from acir.errors import RunError
    from acir.lower_fx import BoundStep, lower
    from acir.measure import measure
    from acir.rebuild import provenance_for, rebuild
    from acir.verify import verify

    if args.iters < 1 or args.warmup < 0:
        raise RunError("--iters must be at least 1 and --warmup at least 0")
    module = read_path(args.file)
    verify(module)
    prov = provenance_for(module, args.model)
    if prov.device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("the artifact was captured for CUDA, but torch sees no CUDA device here")
    gm = lower(module)
    result: dict = {"model": prov.model, "batch_size": prov.batch_size, "nodes": len(module.graph.nodes),
                    "device": prov.device, "pipeline": list(module.header.pipeline)}
    status = 0
    if args.check:
        from acir.check import check_against_eager

        def make():
            return rebuild(prov)

        def run_acir(model, opt, batch):
            return BoundStep(module, model, opt, gm)(batch)

        report = check_against_eager(make, run_acir, args.seed)
        result.update(check="ok" if report.ok else "mismatch", max_abs_diff=report.max_abs_diff,
                      loss=report.loss_acir, compared=report.compared)
        if not report.ok:
            result["worst"] = [d.__dict__ for d in report.worst[:10]]
            status = 1
        _log(args, report.summary())
    if args.measure:
        model, opt, _, batch = rebuild(prov)
        step = BoundStep(module, model, opt, gm)
        persistent = lambda: step.inputs(batch)  # noqa: E731
        m = measure(lambda: step(batch), persistent, args.iters, args.warmup, prov.device)
        result.update(peak_bytes=m.peak_bytes, latency_s=m.latency_s, latencies_s=list(m.latencies_s),
                      malloc=m.malloc, iters=args.iters, warmup=args.warmup)
        _log(args, f"measure: peak {m.peak_bytes / 2**20:.1f} MiB ({m.peak_bytes} bytes, live tensor storages), "
                   f"median latency {m.latency_s * 1e3:.1f} ms over {args.iters} iterations "
                   f"(malloc: {m.malloc})")
    if not args.check and not args.measure:
        model, opt, _, batch = rebuild(prov)
        torch.manual_seed(args.seed)
        loss = BoundStep(module, model, opt, gm)(batch)
        result["loss"] = float(loss)
        _log(args, f"one training step: loss {float(loss):.6g}")
    if args.json:
        print(json.dumps(result))
    return status


def main(argv: list[str] | None = None) -> int:
    return run_cli("acir-run", _parser(), _body, argv)


if __name__ == "__main__":
    sys.exit(main())
