"""Node times for ``acir-fit``'s candidates without profiling each: measured at one or two sizes,
carried to the others by the bytes each node moves.

A capture (:class:`Capture`) knows per node the bytes it reads and writes (``traffic``); times
measured at one size are scaled by each node's growth in bytes (``scaled``), or read off a
straight line through two measured sizes (``affine``); with none at all, bytes moved at 10 GB/s
order the planner's choices (``proxy_times``). ``profile_block`` writes them as a ``profile``
analysis the planners read.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir.ir.graph import Module

__all__ = ["Capture", "Times", "affine", "match_nodes", "profile_block", "proxy_times", "scaled", "traffic"]


@dataclass
class Capture:
    value: int
    module: Module
    ops: tuple[str, ...]
    traffic: list[tuple[int, int]]   # per node: bytes it reads, bytes it writes


@dataclass(frozen=True)
class Times:
    node_s: tuple[float, ...]        # per node of the capture, by rank
    iteration_s: float
    source: str                      # "measured", "predicted" or "proxy"
    origin: int                      # the value profiled (0 for proxy times)


def traffic(module: Module) -> list[tuple[int, int]]:
    vals = module.graph.values
    out = []
    for n in module.graph.nodes:
        ins = sum(vals[v].nbytes for v in set(n.input_ids()) if v in vals)
        outs = sum(vals[v].nbytes for v in set(n.output_ids()) if v in vals)
        out.append((ins, outs))
    return out


def match_nodes(a: tuple[str, ...], b: tuple[str, ...]) -> list[int | None]:
    """For each node of ``b``, its node in ``a``: by position when the ops agree, else by op and occurrence."""
    if a == b:
        return list(range(len(b)))
    seen: dict[str, list[int]] = {}
    for i, op in enumerate(a):
        seen.setdefault(op, []).append(i)
    count: dict[str, int] = {}
    out: list[int | None] = []
    for op in b:
        k = count.get(op, 0)
        count[op] = k + 1
        ranks = seen.get(op, [])
        out.append(ranks[k] if k < len(ranks) else None)
    return out


def scaled(ref: Times, ref_cap: Capture, cap: Capture) -> Times:
    """``ref``'s node times carried to ``cap``: each scaled by its node's growth in bytes read or written."""
    node_s = []
    for i, j in enumerate(match_nodes(ref_cap.ops, cap.ops)):
        if j is None:
            node_s.append(0.0)
            continue
        (ri, ro), (ni, no) = ref_cap.traffic[j], cap.traffic[i]
        ratio = max(ni / ri if ri else 1.0, no / ro if ro else 1.0)
        node_s.append(ref.node_s[j] * ratio)
    total = sum(ref.node_s)
    iteration = ref.iteration_s * sum(node_s) / total if total else sum(node_s)
    return Times(tuple(node_s), iteration, "predicted", ref.origin)


def affine(near: Times, near_cap: Capture, far: Times, far_cap: Capture, cap: Capture) -> Times:
    """Node times for ``cap`` from two profiles: per node, a straight line through its two (bytes moved,
    time) points -- a fixed cost plus a cost per byte -- read at ``cap``'s bytes from the nearer one.
    A node whose line falls (noise) keeps the mean of its two times; no time goes below zero."""
    node_s = []
    to_near, to_far = match_nodes(near_cap.ops, cap.ops), match_nodes(far_cap.ops, cap.ops)
    for i, (j, k) in enumerate(zip(to_near, to_far)):
        if j is None or k is None:
            node_s.append(0.0 if j is None else near.node_s[j])
            continue
        x = sum(cap.traffic[i])
        x1, t1 = sum(near_cap.traffic[j]), near.node_s[j]
        x2, t2 = sum(far_cap.traffic[k]), far.node_s[k]
        if x1 == x2:  # the node moves as many bytes at both sizes: scale by its own growth, if any
            node_s.append(t1 * (x / x1 if x1 else 1.0))
            continue
        slope = (t2 - t1) / (x2 - x1)
        node_s.append((t1 + t2) / 2 if slope <= 0 else max(0.0, t1 + slope * (x - x1)))
    total = sum(near.node_s)
    iteration = near.iteration_s * sum(node_s) / total if total else sum(node_s)
    return Times(tuple(node_s), iteration, "predicted", near.origin)


def proxy_times(cap: Capture) -> Times:
    """Times with no profile at all: bytes moved at 10 GB/s, only to order the planner's choices."""
    node_s = tuple((i + o) / 1e10 for i, o in cap.traffic)
    return Times(node_s, sum(node_s), "proxy", 0)


def profile_block(module: Module, times: Times):
    import torch

    from acir.ir import analyses

    method = {"measured": "measured (acir-fit)", "proxy": "proxy: bytes moved (acir-fit)"}.get(
        times.source, f"predicted from {times.origin} by bytes moved (acir-fit)")
    return analyses.Profile(
        revision=module.header.revision, device=module.header.provenance.device, method=method, reps=0, warmup=0,
        torch_version=torch.__version__, malloc="", measured_peak_bytes=0, peak_node=-1,
        nodes=[analyses.NodeProfile(n.id, t, 0, 0, 0, 0) for n, t in zip(module.graph.nodes, times.node_s)],
        iteration_s=times.iteration_s)
