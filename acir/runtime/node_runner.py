"""Run an IR graph node by node, timing each node and tracking live memory after each.

The runner executes exactly what the lowered ``torch.fx`` code executes — the same
resolved overloads in the same order, each value released right after its last use, the
unused outputs of a tuple-returning op released right after it — so what it measures per
node adds up to what ``acir-run --measure`` measures for the whole step (an operator whose
kernel reads grad mode runs as lowering runs it: :func:`acir.runtime.lower.call_with_grad_mode`).
Times are taken around the operator call only (the argument plumbing is outside the clock);
on CUDA the device is synchronised around each node so that a node's time is its own.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

from acir.ir.graph import Module, ValueRef, arg_refs
from acir.ir.ops import resolve_op, to_torch
from acir.runtime.lower import call_with_grad_mode, runs_with_grad_mode


@dataclass(frozen=True)
class NodeMemory:
    alloc_bytes: int
    freed_bytes: int
    peak_bytes: int
    live_bytes: int


class NodeRunner:
    """One training iteration of ``module``, one node at a time, on the given input tensors."""

    def __init__(self, module: Module) -> None:
        g = module.graph
        self.module = module
        self.ops = [functools.partial(call_with_grad_mode, n.op) if runs_with_grad_mode(n) else resolve_op(n.op)
                    for n in g.nodes]
        last: dict[int, int] = {}
        for rank, n in enumerate(g.nodes):
            for v in n.input_ids():
                last[v] = rank
        end = len(g.nodes)
        for v in g.outputs:
            last[v] = end
        # values to release after each rank: those last used there, and outputs never used
        self.release: list[list[int]] = [[] for _ in g.nodes]
        for rank, n in enumerate(g.nodes):
            for v in n.output_ids():
                if v not in last:
                    self.release[rank].append(v)
        for v, rank in last.items():
            if rank < end:
                self.release[rank].append(v)

    def run(self, inputs: list, on_node: Callable[[int, Callable[[], Any]], Any] | None = None,
            after_release: Callable[[int], None] | None = None):
        """Run once; ``on_node(rank, call)`` wraps each operator call (for timing)."""
        g = self.module.graph
        env: dict[int, Any] = {inp.value: t for inp, t in zip(g.inputs, inputs)}
        lookup = env.__getitem__
        for rank, (n, op) in enumerate(zip(g.nodes, self.ops)):
            args = [to_torch(a, lookup) for a in n.args]
            kwargs = {k: to_torch(v, lookup) for k, v in n.kwargs.items()}
            if on_node is None:
                out = op(*args, **kwargs)
            else:
                out = on_node(rank, functools.partial(op, *args, **kwargs))
            del args, kwargs
            _bind(n.outputs, out, env)
            del out
            for v in self.release[rank]:
                env.pop(v, None)
            if after_release is not None:
                after_release(rank)
        result = tuple(env[v] for v in g.outputs)
        env.clear()
        return result


def _bind(tree, out, env: dict) -> None:
    if isinstance(tree, ValueRef):
        env[tree.id] = out
    elif isinstance(tree, list):
        for sub, o in zip(tree, out):
            if arg_refs(sub):
                _bind(sub, o, env)


def time_nodes(runner: NodeRunner, inputs_fn: Callable[[], list], reps: int, warmup: int,
               device: str = "cpu", progress: Callable[[str], None] | None = None) -> list[list[float]]:
    """Per node, the run times of ``reps`` iterations after ``warmup`` (seconds)."""
    import torch

    n = len(runner.module.graph.nodes)
    times: list[list[float]] = [[] for _ in range(n)]
    cuda = device.startswith("cuda")

    def timed(rank: int, call):
        if cuda:  # CUDA events around the node, synchronised so that the time is the node's own
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = call()
            end.record()
            end.synchronize()
            times[rank].append(start.elapsed_time(end) / 1e3)
            return out
        t0 = time.perf_counter()
        out = call()
        times[rank].append(time.perf_counter() - t0)
        return out

    with torch.no_grad():
        for i in range(warmup):
            if progress:
                progress(f"warm-up {i + 1}/{warmup}")
            runner.run(inputs_fn())
        for t in times:
            t.clear()
        for i in range(reps):
            if progress:
                progress(f"timing {i + 1}/{reps}")
            runner.run(inputs_fn(), on_node=timed)
    return times


def memory_by_node(runner: NodeRunner, inputs: list, device: str = "cpu") -> tuple[list[NodeMemory], int]:
    """Live bytes around every node of one iteration, and the iteration's peak.

    On the CPU the dispatch-level live-storage tracker of :mod:`acir.runtime.measure` counts; on
    CUDA the caching allocator's ``memory_allocated``.
    """
    import torch

    from acir.runtime.measure import live_storage_tracker

    out: list[NodeMemory] = []
    state = {"before": 0, "peak_node": 0}
    if device.startswith("cuda"):
        current = torch.cuda.memory_allocated
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        tracker = None
    else:
        tracker = live_storage_tracker()
        tracker.register_all(inputs)
        current = lambda: tracker.current  # noqa: E731
    peaks: list[int] = []

    def on_node(rank: int, call):
        state["before"] = current()
        res = call()
        peaks.append(current())
        return res

    def after_release(rank: int) -> None:
        live = current()
        peak = peaks[rank]
        out.append(NodeMemory(peak - state["before"], peak - live, peak, live))

    with torch.no_grad():
        if tracker is not None:
            with tracker:
                runner.run(inputs, on_node=on_node, after_release=after_release)
            total_peak = tracker.peak
        else:
            runner.run(inputs, on_node=on_node, after_release=after_release)
            torch.cuda.synchronize()
            total_peak = torch.cuda.max_memory_allocated()
    return out, total_peak
