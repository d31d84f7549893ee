"""Simulated no-AC peaks before and after the in-place loss head, from capture alone (no run).

    python benchmarks/loss_head_peaks.py "bert-base --seq-len 128 -b 16" "gpt2 --seq-len 256 -b 4"

Each argument is acir-capture's model and options. Prints the simulated peak of the graph as
captured and of its fused view (acir.analysis.loss_head), and the persistent bytes. These are the
simulator's figures (it equals the tracker's measured peak on every graph the tests run);
measure with acir-run --measure to report a measured saving.
"""

from __future__ import annotations

import shlex
import sys


def main(specs: list[str]) -> None:
    from acir.analysis.loss_head import fused_view
    from acir.analysis.simulator import simulate, storage_lives
    from acir.api import CaptureOptions, capture
    from acir.tools.capture import _parser as capture_parser

    for spec in specs:
        a = capture_parser().parse_args(shlex.split(spec))
        m = capture(CaptureOptions(a.model, a.batch_size, a.seq_len, a.image_size))
        before = simulate(m.graph, storage_lives(m.graph))
        view, stats = fused_view(m.graph)
        after = simulate(view, storage_lives(view))
        mib = 2 ** 20
        print(f"{spec}: simulated no-AC peak {before.peak_bytes / mib:.1f} MiB -> {after.peak_bytes / mib:.1f} MiB with "
              f"the loss head in place ({stats.forward} forward, {stats.backward} backward fused; "
              f"{100 * (after.peak_bytes / before.peak_bytes - 1):+.1f}%); persistent {before.persistent_bytes / mib:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
