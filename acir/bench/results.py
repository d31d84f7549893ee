"""What ``acir-bench`` records: one :class:`Result` per configuration, its files and its table.

Apart from the measurement loop (:mod:`acir.bench.driver`) because results outlive the run
that measured them: a run of hours is read back to redraw the plots and reprint the table
(``acir-bench --replot``), rows are rebuilt from old logs (``benchmarks/log_tables.py``),
and the plots (:mod:`acir.bench.plots`) draw them - none of which measures anything, so none
needs torch or the configurations. The CSV is for spreadsheets (:data:`COLUMNS`, in order;
the timed latencies joined by ``;``); the JSON carries the same rows plus the machine and
the settings, and is what :func:`read_results` reads back.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

__all__ = ["COLUMNS", "Result", "format_table", "read_results", "write_results"]

#: The CSV columns, in order (the JSON rows carry the same keys, latencies as a list).
COLUMNS = ("model", "batch_size", "seq_len", "image_size", "config", "family", "budget", "status", "reason",
           "peak_bytes", "peak_mib", "peak_change", "latency_s", "latency_change", "cpu_s", "cpu_change",
           "peak_change_vs_eager", "latency_change_vs_eager", "match", "mismatch", "max_abs_diff", "loss",
           "budget_bytes", "predicted_peak_bytes", "simulated_peak_bytes", "predicted_recompute_s",
           "predicted_overhead", "recomputed",
           "blocks", "backend", "allocator_peak_bytes", "setup_s", "first_step_s", "iters", "warmup", "latencies_s",
           "device", "malloc")


@dataclass
class Result:
    """One configuration on one workload: what was measured, what its planner predicted, how it matched."""

    model: str
    batch_size: int
    seq_len: int
    image_size: int
    config: str
    family: str
    budget: str
    status: str = "ok"
    reason: str = ""
    peak_bytes: int | None = None
    latency_s: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    peak_change: float | None = None      # vs noac (the captured step without AC)
    latency_change: float | None = None
    cpu_s: float | None = None            # median CPU time of the process over the timed iterations
    cpu_change: float | None = None       # vs noac
    peak_change_vs_eager: float | None = None
    latency_change_vs_eager: float | None = None
    match: str = ""                      # yes / no / n/a, vs noac
    mismatch: str = ""
    max_abs_diff: float | None = None
    loss: float | None = None
    budget_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    simulated_peak_bytes: int | None = None
    predicted_recompute_s: float | None = None
    predicted_overhead: float | None = None  # predicted recompute time / the profiled iteration (acir rows)
    recomputed: int | None = None
    blocks: str = ""
    backend: str = ""
    allocator_peak_bytes: int | None = None
    setup_s: float | None = None
    first_step_s: float | None = None
    iters: int = 0
    warmup: int = 0
    device: str = "cpu"
    malloc: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict:
        d = asdict(self)
        d["peak_mib"] = None if self.peak_bytes is None else round(self.peak_bytes / 2**20, 3)
        return {k: d[k] for k in COLUMNS}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.1f}%"


def format_table(results: list[Result]) -> str:
    """A plain-text table, one line per configuration, grouped by model and batch size."""
    mw = max([5] + [len(r.model) for r in results])
    cw = max([6] + [len(r.config) for r in results])
    head = f"{'model':<{mw}} {'batch':>5}  {'config':<{cw}} {'peak MiB':>9} {'vs noac':>8} {'latency ms':>10} " \
           f"{'vs noac':>8} {'predicted':>9} {'CPU vs noac':>11}  {'match':<5} notes"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.ok:
            lines.append(f"{r.model:<{mw}} {r.batch_size:>5}  {r.config:<{cw}} {r.peak_bytes / 2**20:>9.1f} "
                         f"{_pct(r.peak_change):>8} {r.latency_s * 1e3:>10.1f} {_pct(r.latency_change):>8} "
                         f"{_pct(r.predicted_overhead):>9} {_pct(r.cpu_change):>11}  "
                         f"{r.match:<5} {r.mismatch}")
        else:
            lines.append(f"{r.model:<{mw}} {r.batch_size:>5}  {r.config:<{cw}} {'failed':>9} {'':>8} {'':>10} "
                         f"{'':>8} {'':>9} {'':>11}  {'':<5} {r.reason}")
    return "\n".join(lines)


def write_results(results: list[Result], machine: dict, settings: dict, outdir: str) -> list[str]:
    """results.csv and results.json in ``outdir``; returns their paths."""
    import csv
    import json

    os.makedirs(outdir, exist_ok=True)
    csv_path, json_path = os.path.join(outdir, "results.csv"), os.path.join(outdir, "results.json")
    # each file written beside its place and then renamed over it: a run killed while writing keeps the last one
    with open(csv_path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in results:
            row = r.row()
            row["latencies_s"] = ";".join(f"{t:.6f}" for t in r.latencies_s)
            w.writerow(["" if row[k] is None else row[k] for k in COLUMNS])
    with open(json_path + ".tmp", "w") as f:
        json.dump({"machine": machine, "settings": settings, "results": [r.row() for r in results]}, f, indent=1)
        f.write("\n")
    os.replace(csv_path + ".tmp", csv_path)
    os.replace(json_path + ".tmp", json_path)
    return [csv_path, json_path]


def read_results(path: str) -> tuple[list[Result], dict, dict]:
    """(results, machine, settings) from a results.json that :func:`write_results` wrote."""
    import json

    with open(path) as f:
        d = json.load(f)
    known = Result.__dataclass_fields__
    results = [Result(**{k: v for k, v in row.items() if k in known}) for row in d.get("results", [])]
    return results, d.get("machine", {}), d.get("settings", {})
