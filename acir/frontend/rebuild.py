"""Rebuild the live model, optimizer and batch an artifact was captured from.

``acir-run`` and the check need real tensors: the provenance in the artifact's header
names the model, sizes, optimizer and seed, and building again from the same seed gives
the same weights and batch bit for bit.
"""

from __future__ import annotations

from dataclasses import replace

from acir.errors import RunError
from acir.ir.graph import Module, Provenance


def provenance_for(module: Module, model_override: str | None = None) -> Provenance:
    prov = module.header.provenance
    if model_override:
        prov = replace(prov, model=model_override)
    if not prov.model:
        raise RunError("the artifact records no model to rebuild (no provenance); capture it with acir-capture, "
                       "or use the Python API with your own model")
    return prov


def rebuild(prov: Provenance):
    """(model, optimizer, loss_fn, batch), built with real tensors from ``prov``; for a step of
    gradient accumulation (``prov.accumulate`` > 1, whose artifact is the last micro-batch),
    the earlier micro-batches have run eagerly on the batch, so the parameters hold their
    accumulated ``.grad`` (each from its own fixed seed: the same gradients every rebuild)."""
    import torch

    from acir.frontend.step import build_workload

    wl, opt = build_workload(prov)
    if prov.accumulate > 1:
        rng = torch.random.get_rng_state()
        try:
            for k in range(prov.accumulate - 1):
                torch.manual_seed(prov.seed + 1 + k)
                (wl.loss_fn(wl.model, wl.batch) / prov.accumulate).backward()
        finally:
            torch.random.set_rng_state(rng)
    return wl.model, opt, wl.loss_fn, wl.batch
