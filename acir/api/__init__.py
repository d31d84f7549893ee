"""The Python entry points: ``acir.capture`` for artifacts, ``acir.compile`` for a training loop.

    step = acir.compile(model, optimizer, loss_fn, example_batch)
    for batch in loader:
        loss = step(batch)      # forward, backward and optimizer step, in place
        scheduler.step()        # read by the next call: hyper-parameters are graph inputs

:mod:`acir.api.capturing` captures a model by name (``acir-capture``); :mod:`acir.api.steps`
holds the compiled step (a graph per batch shape, optimizer decision and accumulation
phase, captured when first met); :mod:`acir.api.planning` fits a captured graph to a budget;
:mod:`acir.api.fitting` finds the largest batch (or sequence) that fits a memory size (``acir-fit``).
"""

from __future__ import annotations

from acir.api.capturing import apply_schedule, capture
from acir.api.fitting import FitResult, fit
from acir.api.steps import Step, compile
from acir.frontend.step import SCHEDULES, CaptureOptions

__all__ = ["CaptureOptions", "FitResult", "SCHEDULES", "Step", "apply_schedule", "capture", "compile", "fit"]
