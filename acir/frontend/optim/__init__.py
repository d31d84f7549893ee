"""Optimizers as acir captures them: the user's ``torch.optim`` optimizer, exactly as built.

acir does not reconfigure the optimizer (no ``capturable=True``, no state made up front
that torch would not have made): each supported class has a :class:`~acir.frontend.optim.rule.Rule`
that reproduces its single-tensor step bit for bit, with every hyper-parameter read from
``optimizer.param_groups`` at every call, so schedulers, parameter groups and
``load_state_dict`` work unchanged. What cannot be honoured is refused here, at compile
time, with one sentence: an unsupported class (LBFGS needs a closure that re-evaluates the
model; SparseAdam needs sparse gradients), a subclass or instance that replaces ``step``,
step hooks, and the options a rule refuses (``fused``, ``foreach``, ``differentiable``,
``capturable``, Tensor hyper-parameters).
"""

from __future__ import annotations

from acir.errors import CaptureError
from acir.frontend.optim.rule import ParamStep, Rule

__all__ = ["OPTIMIZERS", "ParamStep", "Rule", "check_optimizer", "eager_step", "make_optimizer", "mark_stepped",
           "optimizer_options", "rule_for"]

#: The optimizers ``acir-capture --optimizer`` builds by name.
OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "adamax", "nadam", "radam")

#: Why the ``torch.optim`` classes acir cannot reproduce are refused.
_REFUSED = {
    "LBFGS": "its step re-evaluates the model through a closure several times, which one captured step cannot "
             "express; use another optimizer",
    "SparseAdam": "it needs sparse gradients, and acir captures dense tensor programs; use Adam",
}


def _rules() -> list[Rule]:
    from acir.frontend.optim.adagrad import AdagradRule
    from acir.frontend.optim.adam import AdamRule
    from acir.frontend.optim.adamax import AdamaxRule
    from acir.frontend.optim.nadam import NAdamRule
    from acir.frontend.optim.radam import RAdamRule
    from acir.frontend.optim.rmsprop import RMSpropRule
    from acir.frontend.optim.sgd import SGDRule

    return [SGDRule(), AdamRule(), AdagradRule(), RMSpropRule(), AdamaxRule(), NAdamRule(), RAdamRule()]


def rule_for(opt) -> Rule:
    """The rule that reproduces ``opt``'s step, or a :class:`CaptureError` saying why there is none."""
    import torch

    name = type(opt).__name__
    if not isinstance(opt, torch.optim.Optimizer):
        raise CaptureError(f"the optimizer must be a torch.optim.Optimizer, not {name}")
    if name in _REFUSED and type(opt).__module__.startswith("torch.optim"):
        raise CaptureError(f"{name} is not supported: {_REFUSED[name]}")
    for rule in _rules():
        if type(opt) in rule.classes:
            return rule
        for cls in rule.classes:
            if isinstance(opt, cls):
                raise CaptureError(f"{name} subclasses {cls.__name__}; acir reproduces torch's own {cls.__name__} step "
                                   f"bit for bit, and a subclass may change it: use torch.optim.{cls.__name__} itself")
    known = sorted({c.__name__ for r in _rules() for c in r.classes})
    raise CaptureError(f"optimizer {name} is not supported; acir reproduces {', '.join(known)}")


def check_optimizer(opt, model=None) -> Rule:
    """Refuse (one sentence) what a captured step cannot honour; return the rule that reproduces ``opt``."""
    import torch.optim.optimizer as optimizer_module

    rule = rule_for(opt)
    name = type(opt).__name__
    if "step" in vars(opt) and not _scheduler_wrapped(opt):
        raise CaptureError(f"{name}.step was replaced on this instance; acir reproduces torch's own step, so it "
                           "would not run yours")
    hooks = [h for h in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks") if getattr(opt, h, None)]
    if hooks or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks:
        raise CaptureError(f"{name} has step hooks (register_step_pre_hook/register_step_post_hook); a captured step "
                           "would not call them: remove them, or run them yourself around the step")
    if not any(g["params"] for g in opt.param_groups):
        raise CaptureError(f"{name} has no parameters to update")
    for group in opt.param_groups:
        rule.check(opt, group)
        for p in group["params"]:
            if p.is_complex():
                raise CaptureError(f"{name} updates a complex parameter; acir captures real-valued steps only")
            if p.is_sparse:
                raise CaptureError(f"{name} updates a sparse parameter; acir captures dense tensor programs only")
    if model is not None:
        ids = {id(p) for p in model.parameters()}
        for group in opt.param_groups:
            if any(id(p) not in ids for p in group["params"]):
                raise CaptureError(f"{name} holds a parameter that is not in the model; give the optimizer the "
                                   "model's own parameters")
    return rule


def _scheduler_wrapped(opt) -> bool:
    """Is the instance's ``step`` only an LR scheduler's wrapper around the class's own step?"""
    step = vars(opt).get("step")
    return bool(getattr(step, "_wrapped_by_lr_sched", False)) and getattr(step, "__wrapped__", None) is type(opt).step


def mark_stepped(opt) -> None:
    """What an eager ``optimizer.step()`` leaves behind besides the update: the flag an LR
    scheduler's wrapper sets, which the scheduler checks to warn about a wrong call order."""
    opt._opt_called = True


def make_optimizer(name: str, params, lr: float):
    """The optimizer ``acir-capture --optimizer NAME`` trains with, built as a user would build it."""
    import torch

    table = {"adam": lambda: torch.optim.Adam(params, lr=lr),
             "adamw": lambda: torch.optim.AdamW(params, lr=lr),
             "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9),
             "adagrad": lambda: torch.optim.Adagrad(params, lr=lr),
             "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr),
             "adamax": lambda: torch.optim.Adamax(params, lr=lr),
             "nadam": lambda: torch.optim.NAdam(params, lr=lr),
             "radam": lambda: torch.optim.RAdam(params, lr=lr)}
    if name not in table:
        raise CaptureError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return table[name]()


def optimizer_options(opt) -> dict[str, str]:
    """The hyper-parameters of the first param group, as strings, for the provenance."""
    group = opt.param_groups[0]
    return {k: repr(group[k]) for k in sorted(group) if k != "params"}


def eager_step(model, opt, loss_fn, batch, clip_grad_norm: float | None = None, accumulate: int = 1):
    """One eager training iteration, the reference every captured step must reproduce: with
    ``accumulate`` > 1, the last micro-batch of an accumulation (the earlier ones' gradients
    are the parameters' ``.grad``): ``(loss / accumulate).backward()``, clip, step, zero."""
    import torch

    if accumulate <= 1:
        opt.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    (loss / accumulate if accumulate > 1 else loss).backward()
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    opt.step()
    if accumulate > 1:
        opt.zero_grad(set_to_none=True)
    return loss.detach()
