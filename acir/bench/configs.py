"""The configurations ``acir-bench`` compares: acir's steps and what a user would pick instead.

Every configuration trains its own copy of the same workload, built from the same seed
(same weights, batch and optimizer state, Adam in capturable mode), and is one
:class:`Runner`: ``step()`` runs one whole training iteration in place.

- ``eager``: plain PyTorch, the reference a user starts from.
- ``noac``: the captured acir step without activation checkpointing (``acir.compile``).
- ``acir-<planner>-<budget>``: the same capture, profiled once per batch size on copies of
  the model, then planned (``mutwo`` or ``optimal``) and rewritten for each budget; the
  budget ``floor`` is the lowest peak μ-TWO knows how to reach (the bottom of a sweep).
- ``checkpoint``: ``torch.utils.checkpoint`` (non-reentrant) around every block: the
  children of an ``nn.ModuleList`` / ``nn.Sequential`` that repeat one class with
  submodules (ResNet's BasicBlock/Bottleneck, BERT's and GPT-2's layers), or the classes
  a user names.
- ``torch-budget-<b>``: ``torch.compile`` of the loss with PyTorch's memory-budget
  partitioner (``torch._functorch.config.activation_memory_budget``): the ``aot_eager``
  backend on the CPU (AOT autograd, the min-cut partitioner, the graphs run as they are,
  so the latency compares kernels like for like), inductor on CUDA. Each configuration
  compiles its own code object, so that Dynamo's cache never hands one budget's graphs to
  another, and the budget is patched around every call, so that a recompilation keeps it.
  The whole loss must compile as one graph (``fullgraph=True``: a budget is applied per
  graph); log calls inside it are skipped. The optimizer step stays eager.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from acir.errors import BenchError
from acir.ir.analyses import LIVENESS, PLAN, PROFILE

#: A planned configuration's budget that is the lowest peak its planner knows how to reach.
FLOOR = "floor"

#: The configuration families, in the order they run and are drawn.
FAMILIES = ("eager", "noac", "acir-mutwo", "acir-optimal", "checkpoint", "torch-budget")


@dataclass(frozen=True)
class ConfigSpec:
    """One configuration to run: its family and, for budgeted families, the budget as written."""

    family: str
    budget: str = ""

    @property
    def name(self) -> str:
        if self.matched:
            return f"{self.family}@{self.matched}"
        return f"{self.family}-{self.budget}" if self.budget else self.family

    @property
    def matched(self) -> str:
        """The configuration whose measured peak is this one's budget (``=NAME``), or ''."""
        return self.budget[1:] if self.budget.startswith("=") else ""


@dataclass(frozen=True)
class Workload:
    """What every configuration of one row of the table trains."""

    model: str
    batch_size: int
    seq_len: int = 0
    image_size: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


@dataclass
class Runner:
    """A configuration ready to run: ``step()`` is one training iteration, in place."""

    spec: ConfigSpec
    model: Any
    opt: Any
    batch: Any
    step: Callable[[], Any]
    persistent: Callable[[], list]  # the tensors alive before a step (params, buffers, optimizer state, batch)
    info: dict = field(default_factory=dict)


def fresh(w: Workload):
    """(model, optimizer, loss_fn, batch) with real tensors, the same for every call."""
    from acir.frontend.step import CaptureOptions, build_workload

    wl, opt = build_workload(CaptureOptions(w.model, w.batch_size, w.seq_len, w.image_size, w.optimizer, w.lr,
                                            w.seed, w.device))
    return wl.model, opt, wl.loss_fn, wl.batch


def state_tensors(model, opt, batch) -> list:
    """Parameters, buffers, optimizer state and the batch: what lives across iterations."""
    import torch
    from torch.utils._pytree import tree_leaves

    out = list(model.parameters()) + list(model.buffers())
    for st in opt.state.values():
        out += [v for v in st.values() if isinstance(v, torch.Tensor)]
    return out + [t for t in tree_leaves(batch) if isinstance(t, torch.Tensor)]


def _eager_runner(spec: ConfigSpec, model, opt, loss_fn, batch, info: dict | None = None) -> Runner:
    from acir.frontend.optim import eager_step

    return Runner(spec, model, opt, batch, lambda: eager_step(model, opt, loss_fn, batch),
                  lambda: state_tensors(model, opt, batch), info or {})


def _acir_runner(spec: ConfigSpec, module, model, opt, batch, info: dict) -> Runner:
    import torch

    from acir.runtime.lower import BoundStep

    step = BoundStep(module, model, opt)
    return Runner(spec, model, opt, batch, lambda: step(batch),
                  lambda: [t for t in step.inputs(batch) if isinstance(t, torch.Tensor)], info)


class Builder:
    """Builds the configurations of one workload, sharing the capture and the profile."""

    def __init__(self, w: Workload, *, profile_reps: int = 3, time_limit: float = 30.0,
                 blocks: tuple[str, ...] = (), torch_backend: str = "") -> None:
        self.w = w
        self.profile_reps = profile_reps
        self.time_limit = time_limit
        self.blocks = blocks
        self.torch_backend = torch_backend or ("inductor" if w.device.startswith("cuda") else "aot_eager")
        self._captured = None  # the noac Module
        self._profiled = None  # the same, with a profile block
        self._floor_bytes: int | None = None

    def build(self, spec: ConfigSpec, budget: str = "") -> Runner:
        """``spec``'s runner; ``budget`` replaces a matched spec's ``=NAME`` with bytes."""
        fam = spec.family
        if fam == "eager":
            return _eager_runner(spec, *fresh(self.w))
        if fam == "noac":
            model, opt, _, batch = fresh(self.w)
            module = self._capture()
            return _acir_runner(spec, module, model, opt, batch, {"nodes": len(module.graph.nodes)})
        if fam in ("acir-mutwo", "acir-optimal"):
            return self._planned(spec, fam.removeprefix("acir-"), budget or spec.budget)
        if fam == "checkpoint":
            model, opt, loss_fn, batch = fresh(self.w)
            wrapped = checkpoint_blocks(model, self.blocks)
            names = sorted(Counter(type(m).__name__ for _, m in wrapped).items())
            info = {"blocks": f"{len(wrapped)} ({', '.join(f'{k} x{v}' for k, v in names)})"}
            return _eager_runner(spec, model, opt, loss_fn, batch, info)
        if fam == "torch-budget":
            return self._torch_budget(spec)
        raise BenchError(f"unknown configuration {fam!r}; choose from {', '.join(FAMILIES)}")

    def _capture(self):
        if self._captured is None:
            import acir

            model, opt, loss_fn, batch = fresh(self.w)
            self._captured = acir.compile(model, opt, loss_fn, batch).module
        return self._captured

    def _profile(self):
        """The captured step with its profile, measured once on a throw-away copy of the workload."""
        if self._profiled is None:
            import torch

            from acir.passes.profile import profile_step

            module = copy.deepcopy(self._capture())
            rng = torch.random.get_rng_state()
            try:
                model, opt, _, batch = fresh(self.w)
                module.analyses[PROFILE] = profile_step(module, model, opt, batch, self.profile_reps, 1)
                del model, opt, batch
            finally:
                torch.random.set_rng_state(rng)
            module.header.pipeline.append(f"profile{{reps={self.profile_reps},warmup=1}}")
            self._profiled = module
        return self._profiled

    def _planned(self, spec: ConfigSpec, planner: str, budget: str) -> Runner:
        from acir.pipeline.manager import PassManager
        from acir.pipeline.registry import instantiate
        from acir.pipeline.syntax import PassSpec

        if budget == FLOOR:
            budget = str(self._floor())
        options = {"budget": budget}
        if planner == "optimal":
            options["time_limit"] = repr(float(self.time_limit))
        module = copy.deepcopy(self._profile())
        passes = [instantiate(PassSpec("liveness", {})), instantiate(PassSpec(planner, options)),
                  instantiate(PassSpec("rewrite", {}))]
        PassManager(passes).run(module)
        plan = module.analyses[PLAN]
        info = {"budget_bytes": plan.budget_bytes, "predicted_peak_bytes": plan.predicted_peak_bytes,
                "predicted_recompute_s": round(plan.predicted_recompute_s, 6), "recomputed": len(plan.recomputed()),
                "nodes": len(module.graph.nodes)}
        prof = module.analyses.get(PROFILE)
        if prof is not None and prof.iteration_s > 0:  # the cost model's own forecast, to set beside the measured one
            info["predicted_overhead"] = round(plan.predicted_recompute_s / prof.iteration_s, 6)
        live = module.analyses.get(LIVENESS)
        if live is not None and live.revision == module.header.revision:
            info["simulated_peak_bytes"] = live.simulated_peak_bytes
        model, opt, _, batch = fresh(self.w)
        return _acir_runner(spec, module, model, opt, batch, info)

    def _floor(self) -> int:
        """The lowest peak, in bytes, that μ-TWO knows how to reach on this workload (greedy,
        retained and block-checkpoint plans alike): the ``floor`` budget, the sweep's first point."""
        if self._floor_bytes is None:
            from acir.analysis.candidates import build
            from acir.passes.mutwo import block_start, floor_with
            from acir.pipeline.manager import PassManager
            from acir.pipeline.registry import instantiate
            from acir.pipeline.syntax import PassSpec

            module = copy.deepcopy(self._profile())
            PassManager([instantiate(PassSpec("liveness", {}))]).run(module)
            cands = build(module)
            self._floor_bytes = floor_with(block_start(cands))(cands.problem)
        return self._floor_bytes

    def _torch_budget(self, spec: ConfigSpec) -> Runner:
        import torch

        from acir.frontend.optim import eager_step

        budget = float(spec.budget)
        model, opt, loss_fn, batch = fresh(self.w)
        # a code object of its own: Dynamo caches compiled graphs per code object
        tag = f"{spec.name} b{self.w.batch_size} {id(model):x}"
        ns: dict = {}
        exec(compile("def loss(model, batch, loss_fn):\n    return loss_fn(model, batch)\n",  # noqa: S102
                     f"<acir-bench {tag}>", "exec"), ns)
        compiled = torch.compile(ns["loss"], backend=self.torch_backend, fullgraph=True, dynamic=False)

        def compiled_loss(m, b):
            return compiled(m, b, loss_fn)

        # log calls are side effects Dynamo cannot trace (transformers warns once inside GPT-2's loss): skip them
        quiet = set(torch._dynamo.config.ignore_logging_functions) | {
            f for f in (getattr(logging.Logger, n, None) for n in ("debug", "info", "warning", "warning_once")) if f}

        def step():
            with torch._functorch.config.patch(activation_memory_budget=budget), \
                    torch._dynamo.config.patch(ignore_logging_functions=quiet):
                return eager_step(model, opt, compiled_loss, batch)

        return Runner(spec, model, opt, batch, step, lambda: state_tensors(model, opt, batch),
                      {"backend": self.torch_backend})


def find_blocks(model, names: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The outermost modules to checkpoint, as (path, module).

    With ``names``, every module whose class name is one of them. Otherwise the children of
    an ``nn.ModuleList`` or ``nn.Sequential`` of a class that occurs at least twice in that
    container and has submodules of its own (a block, not a lone ``Linear``).
    """
    from torch import nn

    found: list[tuple[str, Any]] = []

    def walk(mod, prefix: str) -> None:
        kids = list(mod.named_children())
        if names:
            chosen = {n for n, c in kids if type(c).__name__ in names}
        elif isinstance(mod, (nn.ModuleList, nn.Sequential)):
            counts = Counter(type(c) for _, c in kids)
            chosen = {n for n, c in kids if counts[type(c)] >= 2 and next(c.children(), None) is not None}
        else:
            chosen = set()
        for n, c in kids:
            path = f"{prefix}.{n}" if prefix else n
            if n in chosen:
                found.append((path, c))
            else:
                walk(c, path)

    if names and type(model).__name__ in names:
        return [("", model)]
    walk(model, "")
    return found


def checkpoint_blocks(model, names: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Wrap the forward of every block of ``model`` (:func:`find_blocks`) in non-reentrant
    ``torch.utils.checkpoint``; returns the blocks, a :class:`BenchError` when there are none."""
    blocks = find_blocks(model, names)
    if not blocks:
        if names:
            raise BenchError(f"no module of class {', '.join(names)} in {type(model).__name__}")
        raise BenchError(f"no repeated blocks found in {type(model).__name__} (children of an nn.ModuleList or "
                         "nn.Sequential of one class with submodules); name the block classes with --blocks")
    for _, mod in blocks:
        mod.forward = _checkpointed(mod.forward)
    _no_kv_cache(model)
    return blocks


def _no_kv_cache(model) -> None:
    """Turn off a transformers model's key/value cache, in every config it holds (T5's decoder keeps
    its own copy), as transformers does when it checkpoints: a replayed block would append to the
    cache again, and checkpoint refuses a replay that saves other tensors than the forward did.
    The loss is the same; the cache is only returned."""
    for mod in model.modules():
        cfg = getattr(mod, "config", None)
        if cfg is not None and getattr(cfg, "use_cache", False):
            cfg.use_cache = False


def _checkpointed(forward: Callable) -> Callable:
    def run(*args, **kwargs):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def timed_build(builder: Builder, spec: ConfigSpec, budget: str = "") -> tuple[Runner, float]:
    t0 = time.perf_counter()
    r = builder.build(spec, budget)
    return r, time.perf_counter() - t0
