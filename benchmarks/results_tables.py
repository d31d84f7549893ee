"""Markdown tables from an acir-bench results.json, for docs/results.md.

    python benchmarks/results_tables.py docs/results/results.json

One table per model: for every batch size and configuration, the measured peak and its
change against no AC, the median wall-clock latency and its change, the change in CPU time,
and whether the final state matches no AC bit for bit. Then, per model and batch size, the
comparisons the targets ask for: acir at each peer's measured peak against that peer.
"""

from __future__ import annotations

import sys


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:+.1f}%"


def model_table(rows: list[dict], model: str) -> str:
    out = ["| batch | configuration | peak (MiB) | vs no AC | latency (s) | vs no AC | CPU time vs no AC | "
           "bit-identical to no AC |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["model"] != model:
            continue
        if r["status"] != "ok":
            out.append(f"| {r['batch_size']} | {r['config']} | failed: {r['reason'][:160]} | | | | | |")
            continue
        match = {"ref": "(reference)", "yes": "yes"}.get(r["match"], f"no: {r['mismatch']}")
        out.append(f"| {r['batch_size']} | {r['config']} | {r['peak_mib']:.1f} | {_pct(r['peak_change'])} | "
                   f"{r['latency_s']:.2f} | {_pct(r['latency_change'])} | {_pct(r.get('cpu_change'))} | {match} |")
    return "\n".join(out)


def matched_table(rows: list[dict], model: str) -> str:
    """acir-X@PEER against PEER, batch by batch: the peer's change in peak and time, acir's."""
    out = ["| batch | peer | peer peak | peer time (wall / CPU) | acir | acir peak | acir time (wall / CPU) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["batch_size"], r["config"]): r for r in rows if r["model"] == model}
    for (b, cfg), r in sorted(by.items()):
        if "@" not in cfg:
            continue
        peer = by.get((b, cfg.split("@", 1)[1]))
        if peer is None or peer["status"] != "ok":
            continue
        if r["status"] != "ok":
            acir = f"failed: {r['reason'][:120]}"
            out.append(f"| {b} | {peer['config']} | {_pct(peer['peak_change'])} | {_pct(peer['latency_change'])} / "
                       f"{_pct(peer.get('cpu_change'))} | {cfg} | {acir} | |")
            continue
        out.append(f"| {b} | {peer['config']} | {_pct(peer['peak_change'])} | {_pct(peer['latency_change'])} / "
                   f"{_pct(peer.get('cpu_change'))} | {cfg} | {_pct(r['peak_change'])} | "
                   f"{_pct(r['latency_change'])} / {_pct(r.get('cpu_change'))} |")
    return "\n".join(out)


def main(path: str) -> None:
    import json

    with open(path) as f:
        doc = json.load(f)
    rows = doc["results"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        print(f"### {m}\n\n{model_table(rows, m)}\n\nacir at the peers' measured peaks:\n\n{matched_table(rows, m)}\n")


if __name__ == "__main__":
    main(sys.argv[1])
