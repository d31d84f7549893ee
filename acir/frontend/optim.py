"""Optimizers as acir captures them: state initialised up front, Adam in capturable mode.

A captured step must be the *steady-state* step, the same graph every iteration, so the
optimizer state exists before the first step (zeros, exactly as torch would create it
lazily) and Adam's step counter is a tensor (``capturable=True``), otherwise its bias
correction calls ``.item()`` and the graph would bake in one step number. torch refuses
capturable Adam on the CPU only through a device allow-list; :func:`cpu_capturable`
widens it while a step runs. The eager reference in ``acir-run --check`` uses the very
same optimizer configuration, so the two runs are comparable bit for bit.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from acir.errors import CaptureError

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(name: str, params, lr: float):
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr, capturable=True, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, capturable=True, foreach=False)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=False)
    raise CaptureError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def optimizer_options(opt) -> dict[str, str]:
    """The hyper-parameters of the first param group, as strings, for the provenance."""
    group = opt.param_groups[0]
    out = {}
    for k in sorted(group):
        if k == "params":
            continue
        v = group[k]
        out[k] = repr(v)
    return out


def prepare(opt) -> None:
    """Make ``opt`` capturable and give every parameter its state, as a first step would."""
    import torch

    kind = type(opt).__name__
    if not isinstance(opt, (torch.optim.Adam, torch.optim.SGD)):  # AdamW subclasses Adam
        raise CaptureError(f"optimizer {kind} is not supported yet; use Adam, AdamW or SGD")
    for group in opt.param_groups:
        if isinstance(opt, torch.optim.Adam):
            group["capturable"] = True
            if group.get("fused"):
                raise CaptureError("fused Adam is not supported; use foreach=False or foreach=True")
        for p in group["params"]:
            state = opt.state[p]
            if state:
                continue
            if isinstance(opt, torch.optim.Adam):
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group.get("amsgrad"):
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif group.get("momentum", 0) != 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    if isinstance(opt, torch.optim.Adam):
        for p, state in opt.state.items():
            step = state.get("step")
            if step is not None and step.device != p.device:
                state["step"] = step.to(p.device)


@contextlib.contextmanager
def cpu_capturable() -> Iterator[None]:
    """Let capturable Adam run on the CPU (torch only allow-lists accelerators)."""
    import torch.optim.adam as adam_mod
    import torch.optim.optimizer as opt_mod

    orig = opt_mod._get_capturable_supported_devices

    def widened(supports_xla: bool = True) -> list[str]:
        return orig(supports_xla) + ["cpu"]

    saved = adam_mod._get_capturable_supported_devices
    adam_mod._get_capturable_supported_devices = widened
    try:
        yield
    finally:
        adam_mod._get_capturable_supported_devices = saved


def eager_step(model, opt, loss_fn, batch):
    """One eager training iteration, the reference every captured step must reproduce."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    with cpu_capturable():
        opt.step()
    return loss.detach()
