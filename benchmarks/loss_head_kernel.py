"""The in-place loss-head backward against the aten pair it replaces: same bits, CPU time.

    python benchmarks/loss_head_kernel.py [--threads 1] [--reps 5]

For a BERT (30522 classes) and a GPT-2 (50257) head at 512 rows, runs
``nll_loss_backward`` + ``_log_softmax_backward_data`` and ``acir::log_softmax_nll_backward_``
on the same inputs, checks the results are bit-identical, and prints the best process CPU
time of each over ``--reps`` runs (CPU time, so that other jobs on the machine matter less).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from acir.analysis.loss_head import FUSED_BACKWARD
    from acir.ir.ops import resolve_op

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fused = resolve_op(FUSED_BACKWARD)
    g = torch.Generator().manual_seed(0)
    for rows, classes in ((512, 30522), (512, 50257)):
        out = torch._log_softmax(torch.randn(rows, classes, generator=g) * 3, 1, False)
        target = torch.randint(0, classes, (rows,), generator=g)
        target[::3] = -100
        grad, total = torch.rand((), generator=g), (target != -100).sum().float()
        aten_s, acir_s = [], []
        for _ in range(args.reps):
            c0 = time.process_time()
            dense = torch.ops.aten.nll_loss_backward(grad, out, target, None, 1, -100, total)
            want = torch.ops.aten._log_softmax_backward_data(dense, out, 1, torch.float32)
            del dense
            c1 = time.process_time()
            mine = out.clone()
            c2 = time.process_time()
            got = fused(mine, grad, target, None, 1, -100, total, 1)
            c3 = time.process_time()
            aten_s.append(c1 - c0)
            acir_s.append(c3 - c2)
        same = torch.equal(got.view(torch.int32), want.view(torch.int32))
        print(f"{rows} x {classes}: aten pair {min(aten_s) * 1e3:.1f} ms, acir in place {min(acir_s) * 1e3:.1f} ms "
              f"CPU ({args.threads} thread(s)); bit-identical: {same}; tensors of {rows * classes * 4 / 2**20:.1f} MiB: "
              "3 live at once for the pair, 1 (+ a 1 MiB block) for acir")


if __name__ == "__main__":
    main()
