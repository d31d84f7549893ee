"""Measuring a training step: peak memory and latency, the way every acir report does.

Peak memory on the CPU is the peak of live tensor *storage* bytes over one iteration,
tracked at the dispatcher: every storage an operator returns is registered once (views
and in-place results add nothing) and released by a weak-reference finaliser when it
dies. Storages that exist before the step (parameters, buffers, optimizer state, the
batch) are pre-registered, so that the total includes them and in-place updates are not
counted as new memory. ``ru_maxrss`` would be useless: glibc keeps freed memory. On CUDA
the allocator's own ``max_memory_allocated`` is used.

Latency is the median of N iterations after warm-up (synchronised on CUDA).
"""

from __future__ import annotations

import os
import statistics
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

#: The glibc setting that keeps freed memory in the heap (see ../shared/TORCH-NOTES.md).
HEAP_RETAINED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def malloc_setting() -> str:
    """How this process's glibc malloc treats freed memory, for reports."""
    tun = os.environ.get("GLIBC_TUNABLES", "")
    return "heap-retained" if "mmap_max=0" in tun else "default"


def _tracker_class():
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveStorageTracker(TorchDispatchMode):
        """Counts live tensor-storage bytes; ``peak`` is the maximum seen."""

        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, int] = {}
            self.current = 0
            self.peak = 0
            self.after_op: Callable[[Any, int], None] | None = None

        def _free(self, key: int) -> None:
            self.current -= self.live.pop(key, 0)

        def register(self, t) -> None:
            import torch

            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                return
            s = t.untyped_storage()
            key = id(s)
            if key in self.live:
                return
            n = s.nbytes()
            self.live[key] = n
            self.current += n
            weakref.finalize(s, self._free, key)
            if self.current > self.peak:
                self.peak = self.current

        def register_all(self, tensors: Iterable) -> None:
            for t in tensors:
                self.register(t)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                self.register(t)
            if self.after_op is not None:
                self.after_op(func, self.current)
            return out

    return LiveStorageTracker


def live_storage_tracker():
    """A fresh dispatch-level tracker (a ``TorchDispatchMode``; use it as a context manager)."""
    return _tracker_class()()


@dataclass(frozen=True)
class Measurement:
    peak_bytes: int
    latency_s: float
    latencies_s: tuple[float, ...]
    device: str
    malloc: str


def measure_peak(step: Callable[[], Any], persistent: Iterable, device: str = "cpu") -> int:
    """Peak live bytes of one call of ``step``; ``persistent`` are the tensors alive before it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    tracker = live_storage_tracker()
    tracker.register_all(persistent)
    with tracker:
        step()
    return tracker.peak


def measure_latency(step: Callable[[], Any], iters: int = 5, warmup: int = 1, device: str = "cpu") -> list[float]:
    """Wall time of ``iters`` calls of ``step`` after ``warmup`` calls (synchronised on CUDA)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def measure(step: Callable[[], Any], persistent_fn: Callable[[], Iterable], iters: int = 5, warmup: int = 1,
            device: str = "cpu") -> Measurement:
    """Latency over ``iters`` iterations after ``warmup``, then the peak of one more."""
    times = measure_latency(step, iters, warmup, device)
    peak = measure_peak(step, persistent_fn(), device)
    return Measurement(peak, statistics.median(times), tuple(times), device, malloc_setting())


def measure_interleaved(steps: dict[str, Callable[[], Any]], iters: int = 5, warmup: int = 1,
                        device: str = "cpu") -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall times and process CPU times of several steps run round-robin, one iteration each
    in turn, so that a drift of the machine (other load, heap growth, clocks) falls on all
    of them alike. On a shared CPU the CPU time (all threads of this process) is the figure
    that other processes disturb least; on CUDA only the wall time means anything."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        for step in steps.values():
            step()
    sync()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu
