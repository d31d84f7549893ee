"""Markdown tables (and the Pareto plot) for docs/results.md, from what acir-bench wrote.

    python benchmarks/results_tables.py docs/results/run          # every */results.json of a run
    python benchmarks/results_tables.py docs/results/run/resnet152/results.json

A folder is read as one run (``benchmarks/results_run.sh``): every ``results.json`` under it,
rows kept apart by the folder they came from (a sweep measures its own no-AC baseline). Per
model:

- every configuration: measured peak and its change against no AC, the median latency and
  its change, the change in CPU time, the cost model's predicted overhead (acir rows), and
  whether the final state matches no AC bit for bit;
- acir at each peer's measured peak against that peer, with the target of issue 17 (acir's
  overhead at most half of checkpoint's) judged row by row;
- the cost model's error: predicted overhead against measured, in percentage points (target
  within 3);
- the Pareto sweep, where the run has one: every point, whether each peer's point is
  dominated by one of acir's (no more memory and no more time), and ``pareto-MODEL.png``
  beside the results file.
"""

from __future__ import annotations

import glob
import json
import os
import sys


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:+.1f}%"


def load(path: str) -> list[tuple[str, list[dict]]]:
    """(label, rows) per results.json: ``path`` itself, or every one under the folder ``path``."""
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "**", "results.json"),
                                                                 recursive=True))
    if not files:
        raise SystemExit(f"results_tables: no results.json at {path}")
    out = []
    for f in files:
        with open(f) as fh:
            out.append((os.path.relpath(os.path.dirname(f), path) if os.path.isdir(path) else f,
                        json.load(fh)["results"]))
    return out


def model_table(rows: list[dict], model: str) -> str:
    out = ["| batch | configuration | peak (MiB) | vs no AC | latency (s) | vs no AC | CPU time vs no AC | "
           "predicted | bit-identical to no AC |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["model"] != model:
            continue
        if r["status"] != "ok":
            out.append(f"| {r['batch_size']} | {r['config']} | failed: {r['reason'][:160]} | | | | | | |")
            continue
        match = {"ref": "(reference)", "yes": "yes"}.get(r["match"], f"no: {r['mismatch']}")
        out.append(f"| {r['batch_size']} | {r['config']} | {r['peak_mib']:.1f} | {_pct(r['peak_change'])} | "
                   f"{r['latency_s']:.2f} | {_pct(r['latency_change'])} | {_pct(r.get('cpu_change'))} | "
                   f"{_pct(r.get('predicted_overhead'))} | {match} |")
    return "\n".join(out)


def matched_table(rows: list[dict], model: str) -> str:
    """acir-X@PEER against PEER, batch by batch; against checkpoint, the target (at most half its overhead)."""
    out = ["| batch | peer | peer peak | peer time (wall / CPU) | acir | acir peak | acir time (wall / CPU) | "
           "target: ≤ half of checkpoint's |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["batch_size"], r["config"]): r for r in rows if r["model"] == model}
    for (b, cfg), r in sorted(by.items()):
        if "@" not in cfg:
            continue
        peer = by.get((b, cfg.split("@", 1)[1]))
        if peer is None or peer["status"] != "ok":
            continue
        head = (f"| {b} | {peer['config']} | {_pct(peer['peak_change'])} | {_pct(peer['latency_change'])} / "
                f"{_pct(peer.get('cpu_change'))} | {cfg} |")
        if r["status"] != "ok":
            out.append(f"{head} failed: {r['reason'][:120]} | | |")
            continue
        verdict = ""
        if peer["config"] == "checkpoint":
            half = peer["latency_change"] / 2
            ok = r["latency_change"] <= half and r["peak_bytes"] <= peer["peak_bytes"]
            verdict = f"{'met' if ok else '**missed**'} (half: {_pct(half)})"
        out.append(f"{head} {_pct(r['peak_change'])} | {_pct(r['latency_change'])} / {_pct(r.get('cpu_change'))} | "
                   f"{verdict} |")
    return "\n".join(out)


def model_error_table(rows: list[dict], model: str) -> str:
    """The cost model's predicted overhead beside the measured one (wall and CPU), acir rows only."""
    out = ["| batch | configuration | predicted | measured (wall) | error | measured (CPU) | error |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["model"] != model or r["status"] != "ok" or r.get("predicted_overhead") is None:
            continue
        p, w, c = r["predicted_overhead"], r["latency_change"], r.get("cpu_change")
        cpu_err = "" if c is None else f"{100 * (p - c):+.1f} pt"
        out.append(f"| {r['batch_size']} | {r['config']} | {_pct(p)} | {_pct(w)} | {100 * (p - w):+.1f} pt | "
                   f"{_pct(c)} | {cpu_err} |")
    return "\n".join(out)


def pareto(rows: list[dict], model: str) -> tuple[str, list[dict], list[dict]]:
    """The sweep's points and which peer points an acir point dominates (no more peak, no more time)."""
    ok = [r for r in rows if r["model"] == model and r["status"] == "ok"]
    acir = sorted((r for r in ok if r["family"].startswith("acir-")), key=lambda r: r["peak_bytes"])
    peers = [r for r in ok if r["family"] in ("checkpoint", "torch-budget")]
    out = ["| peer | peer peak | peer time | dominated by | its peak | its time |",
           "| --- | --- | --- | --- | --- | --- |"]
    for p in peers:
        by = [a for a in acir if a["peak_bytes"] <= p["peak_bytes"] and a["latency_s"] <= p["latency_s"]]
        best = min(by, key=lambda a: a["latency_s"], default=None)
        if best is None:
            out.append(f"| {p['config']} | {_pct(p['peak_change'])} | {_pct(p['latency_change'])} | "
                       "**no acir point** | | |")
        else:
            out.append(f"| {p['config']} | {_pct(p['peak_change'])} | {_pct(p['latency_change'])} | {best['config']} | "
                       f"{_pct(best['peak_change'])} | {_pct(best['latency_change'])} |")
    return "\n".join(out), acir, peers


def pareto_plot(acir: list[dict], peers: list[dict], noac: dict | None, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([r["peak_bytes"] / 2**20 for r in acir], [100 * r["latency_change"] for r in acir], "o-",
            label="acir (μ-TWO), measured")
    for r in acir:
        ax.annotate(r["config"].removeprefix("acir-mutwo").lstrip("-"), (r["peak_bytes"] / 2**20,
                    100 * r["latency_change"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for r, m in zip(peers, "sD^v"):
        ax.plot([r["peak_bytes"] / 2**20], [100 * r["latency_change"]], m, label=r["config"])
    if noac is not None:
        ax.plot([noac["peak_bytes"] / 2**20], [0.0], "k*", label="no AC")
    ax.set_xlabel("measured peak (MiB)")
    ax.set_ylabel("latency vs no AC (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(path: str) -> None:
    for label, rows in load(path):
        for m in dict.fromkeys(r["model"] for r in rows):
            batches = sorted({r["batch_size"] for r in rows if r["model"] == m})
            print(f"### {m}, batch {', '.join(map(str, batches))} ({label})\n\n{model_table(rows, m)}\n\n"
                  f"acir at the peers' measured peaks:\n\n{matched_table(rows, m)}\n\n"
                  f"the cost model's error:\n\n{model_error_table(rows, m)}\n")
            if sum(1 for r in rows if r["model"] == m and r["family"].startswith("acir-")) >= 5:
                table, acir, peers = pareto(rows, m)
                noac = next((r for r in rows if r["model"] == m and r["config"] == "noac" and r["status"] == "ok"),
                            None)
                folder = os.path.join(path, label) if os.path.isdir(path) else os.path.dirname(path)
                png = os.path.join(folder, f"pareto-{m}.png")
                pareto_plot(acir, peers, noac, f"{m}, batch {', '.join(map(str, batches))}: the Pareto sweep", png)
                print(f"the Pareto sweep ({os.path.relpath(png)}):\n\n{table}\n")


if __name__ == "__main__":
    main(sys.argv[1])
