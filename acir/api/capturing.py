"""``acir.capture``: a model by name (or a user's factory) into an artifact, with its schedule."""

from __future__ import annotations

from acir.frontend.step import SCHEDULES, CaptureOptions
from acir.ir.graph import Module


def apply_schedule(module: Module, schedule: str) -> None:
    """Schedule the optimizer of a freshly captured ``module``: ``"interleaved"`` runs the
    ``interleave-optimizer`` pass (recorded in the header's pipeline), ``"eager"`` keeps
    PyTorch's order."""
    from acir.errors import CaptureError

    if schedule not in SCHEDULES:
        raise CaptureError(f"unknown schedule {schedule!r}; use {' or '.join(SCHEDULES)}")
    if schedule == "interleaved":
        from acir.pipeline.manager import PassManager
        from acir.pipeline.registry import build_pipeline

        PassManager(build_pipeline("interleave-optimizer")).run(module)


def capture(opts: CaptureOptions) -> Module:
    """Capture one training iteration of ``opts.model`` under fake tensors (no memory), with
    the optimizer scheduled as ``opts.schedule`` says."""
    from acir.frontend.step import capture_model

    module = capture_model(opts)
    apply_schedule(module, opts.schedule)
    return module
