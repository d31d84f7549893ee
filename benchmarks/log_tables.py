"""Markdown tables from an acir-bench progress log (its standard error), for a run whose
results.json was never written (stopped before the end of a model).

    python benchmarks/log_tables.py docs/results/resnet152-run.log resnet152 [--json OUT.json]

The log has every configuration's measured peak ("peak NAME: X MiB") and every timed
round's latencies ("timed round k/n: NAME X ms, ..."). This prints, per batch size, the
peak and its change against noac, and the median latency over the rounds and its change;
the CPU time and the bit-identity check are only in results.json, so they are not here.
``--json`` also writes the rows in results.json's form, for ``acir-bench --replot`` to draw;
peaks there are the log's MiB (rounded to 0.1 MiB), and the file says it came from a log.
"""

from __future__ import annotations

import re
import statistics
import sys

_PEAK = re.compile(r"\] (\S+) b(\d+): peak (\S+): ([\d.]+) MiB")
_ROUND = re.compile(r"\] (\S+) b(\d+): timed round \d+/\d+: (.*)$")
_FAILED = re.compile(r"\] (\S+) b(\d+): (\S+) FAILED: (.*)$")
_SETTING = re.compile(r"malloc (\S+), device (\S+)")


def parse(lines, model: str):
    peaks: dict[int, dict[str, float]] = {}
    times: dict[int, dict[str, list[float]]] = {}
    failed: dict[int, dict[str, str]] = {}
    for line in lines:
        if m := _PEAK.search(line):
            if m[1] == model:
                peaks.setdefault(int(m[2]), {})[m[3]] = float(m[4])
        elif m := _ROUND.search(line):
            if m[1] == model:
                for part in m[3].split(", "):
                    name, ms, _ = part.rsplit(" ", 2)
                    times.setdefault(int(m[2]), {}).setdefault(name, []).append(float(ms) / 1e3)
        elif m := _FAILED.search(line):
            if m[1] == model:
                failed.setdefault(int(m[2]), {})[m[3]] = m[4]
    return peaks, times, failed


def rows(model: str, peaks, times, failed, malloc: str = "", device: str = "cpu") -> list[dict]:
    """The log's measurements as acir.bench.results.Result rows (what --replot reads)."""
    from acir.bench.results import Result

    out = []
    for b in sorted(set(peaks) | set(failed)):
        base_peak = peaks.get(b, {}).get("noac")
        base_t = times.get(b, {}).get("noac")
        for name, mib in peaks.get(b, {}).items():
            ts = times.get(b, {}).get(name, [])
            lat = statistics.median(ts) if ts else None
            family = name.split("@")[0].split("-0.")[0]
            out.append(Result(model, b, 0, 0, name, family, name.split("@")[1] if "@" in name else "",
                              peak_bytes=round(mib * 2**20), latency_s=lat, latencies_s=ts,
                              peak_change=mib / base_peak - 1 if base_peak else None,
                              latency_change=lat / statistics.median(base_t) - 1 if lat and base_t else None,
                              iters=len(ts), malloc=malloc, device=device).row())
        for name, why in failed.get(b, {}).items():
            out.append(Result(model, b, 0, 0, name, name.split("@")[0], "", status="failed", reason=why).row())
    return out


def table(rows_: list[dict]) -> str:
    out = ["| batch | configuration | peak (MiB) | vs no AC | latency (s) | vs no AC | rounds |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    pct = lambda x: "" if x is None else f"{100 * x:+.1f}%"  # noqa: E731
    for r in rows_:
        if r["status"] != "ok":
            out.append(f"| {r['batch_size']} | {r['config']} | failed: {r['reason'][:160]} | | | | |")
            continue
        lat = "" if r["latency_s"] is None else f"{r['latency_s']:.2f}"
        out.append(f"| {r['batch_size']} | {r['config']} | {r['peak_mib']:.1f} | {pct(r['peak_change'])} | {lat} | "
                   f"{pct(r['latency_change'])} | {r['iters']} |")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("model")
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)
    with open(a.log) as f:
        lines = f.readlines()
    setting = next((m for m in map(_SETTING.search, lines) if m), None)
    found = rows(a.model, *parse(lines, a.model), *(setting.groups() if setting else ()))
    print(table(found))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": {}, "settings": {"source": f"progress log {a.log}: peaks rounded to 0.1 MiB, "
                                                             "median latency over the timed rounds; no CPU time, "
                                                             "no bit-identity check"},
                       "results": found}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
