"""acir-capture: trace one whole training iteration of a model into an acir artifact."""

from __future__ import annotations

import sys
import time

from acir.tools._cli import make_parser, run_cli

EPILOG = """\
examples:
  acir-capture mlp -o mlp.acir
  acir-capture resnet18 --batch-size 2 --image-size 64 -o r18.acir
  acir-capture bert-tiny -b 4 --seq-len 32 | acir-opt --emit=text | head
  acir-capture my_model.py:make -b 8 -o mine.acir     # make(batch_size) -> (model, batch, loss_fn)
  acir-capture resnet152 -b 64 -o r152.acir           # fake tensors: costs no activation memory

A factory that cannot run under fake tensors (an initialiser calling .item(), a checkpoint
read from a file) is built for real and then traced on fake tensors; acir-capture says so,
with the parameter and buffer bytes that cost, and the artifact's header records it.

The artifact records how the model was built (spec, sizes, optimizer, seed, torch version),
so acir-run can rebuild it later. Binary output goes to stdout when it is not a terminal.
"""


def _parser():
    from acir.frontend.optim import OPTIMIZERS
    from acir.frontend.zoo import ZOO

    models = ", ".join(ZOO)
    p = make_parser("acir-capture", "Capture forward, backward and optimizer step of one training iteration "
                    "(traced with make_fx under fake tensors) into an acir artifact.", EPILOG)
    p.add_argument("model", nargs="?", help=f"a zoo model ({models}) or path/to/file.py:make or package.module:make")
    p.add_argument("-b", "--batch-size", type=int, default=2, help="mini-batch size (default 2)")
    p.add_argument("--seq-len", type=int, default=0, help="sequence length for BERT/GPT-2 (default 128)")
    p.add_argument("--image-size", type=int, default=0, help="image side for ResNets (default 224)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                   help="optimizer, built with torch's defaults but lr (sgd: momentum 0.9) (default adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batch (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--schedule", default="interleaved", choices=("interleaved", "eager"),
                   help="interleaved (default): each parameter is updated inside the backward as soon as its "
                        "gradient is final (same numbers, gradients freed early); eager: PyTorch's order, "
                        "the optimizer after the whole backward")
    p.add_argument("--clip-grad-norm", type=float, default=None, metavar="MAX",
                   help="clip_grad_norm_(model.parameters(), MAX) before the update, as a training loop would")
    p.add_argument("--accumulate", type=int, default=1, metavar="K",
                   help="gradient accumulation over K micro-batches: capture the last one, whose gradients from the "
                        "first K-1 come in as inputs and which clips and updates (default 1: none)")
    p.add_argument("-o", "--output", help="output file (default: stdout, when it is not a terminal)")
    p.add_argument("--emit", choices=("binary", "text"), default="binary", help="artifact form (default binary)")
    p.add_argument("--list-models", action="store_true", help="list the zoo and exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar on stderr (there is none unless stderr is a terminal)")
    return p


def _body(args) -> int:
    from acir import progress
    from acir.api import CaptureOptions, capture
    from acir.errors import CaptureError
    from acir.frontend.zoo import ZOO
    from acir.ir.artifact import write_path

    progress.set_quiet(args.quiet)
    if args.list_models:
        for name, entry in ZOO.items():
            print(f"{name:12s} {entry.summary}")
        return 0
    if not args.model:
        raise CaptureError("no model given; name a zoo model (acir-capture --list-models) or path/to/file.py:make")
    t0 = time.perf_counter()
    if args.clip_grad_norm is not None and not (0 < args.clip_grad_norm < float("inf")):
        raise CaptureError(f"--clip-grad-norm must be a positive finite number, not {args.clip_grad_norm}")
    if args.accumulate < 1:
        raise CaptureError(f"--accumulate must be at least 1 micro-batch, not {args.accumulate}")
    from acir.frontend.step import real_build
    from acir.ir.verify import verify
    from acir.units import format_bytes

    # the phases, in a bar whose elapsed time moves while each runs (the trace reports nothing as it goes)
    phases = ["build and trace the step (make_fx, fake tensors), import it, schedule the optimizer",
              "verify (every node re-derived on meta tensors)", "write"]
    what = f"acir-capture {args.model} batch {args.batch_size}"
    with progress.bar(what, total=len(phases), unit="phase", bar_format="{desc} ({n}/{total} phases) [{elapsed}]") \
            as b, progress.ticking(b):
        b.set_description_str(f"{what}: {phases[0]}")
        module = capture(CaptureOptions(args.model, args.batch_size, args.seq_len, args.image_size, args.optimizer,
                                        args.lr, args.seed, args.device, args.schedule, args.clip_grad_norm,
                                        args.accumulate))
        seconds = time.perf_counter() - t0
        built = real_build(module)
        if built is not None:
            nbytes, why = built
            progress.write(f"acir-capture: {args.model} could not be built under fake tensors ({why}), so it was "
                           f"built for real: {format_bytes(nbytes)}{f' ({nbytes} bytes)' if nbytes >= 1024 else ''} "
                           "of parameters and buffers (recorded in the header)")
        for phase, work in ((phases[1], lambda: verify(module)),
                            (phases[2], lambda: write_path(module, args.output, args.emit))):
            b.set_description_str(f"{what}: {phase}", refresh=False)
            b.update(1)
            work()
        b.update(1)
    g = module.graph
    regions = {}
    for n in g.nodes:
        regions[n.region.name.lower()] = regions.get(n.region.name.lower(), 0) + 1
    where = args.output or "stdout"
    print(f"acir-capture: {args.model} batch {args.batch_size}: {len(g.nodes)} nodes "
          f"({', '.join(f'{v} {k}' for k, v in regions.items())}), {len(g.values)} values, "
          f"{len(g.inputs)} inputs in {seconds:.1f} s -> {where}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("acir-capture", _parser(), _body, argv)


if __name__ == "__main__":
    sys.exit(main())
