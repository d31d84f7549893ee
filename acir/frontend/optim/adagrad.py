"""Adagrad (lr_decay, weight decay, maximize): ``torch.optim.adagrad._single_tensor_adagrad``.

Adagrad is the one class that makes its state in ``__init__`` (``step`` and ``sum``, filled
with ``initial_accumulator_value``) rather than at the first step; ``init_state`` only
makes it for a parameter that has none (added later, or dropped by ``load_state_dict``),
as ``_init_group`` does. torch fills such an accumulator with the *constructor's* value
(``optimizer.defaults``), never a param group's own, which a rule (given only the group)
cannot read: a group whose ``initial_accumulator_value`` differs from the defaults is
refused rather than filled with the wrong value. The decayed learning rate
``lr / (1 + (step - 1) * lr_decay)`` comes from the step count on the host; the graph
increments the step tensor itself. Sparse gradients (which torch's Adagrad accepts) are
not reproduced: acir captures dense tensor programs.
"""

from __future__ import annotations

from typing import Any

from acir.errors import CaptureError
from acir.frontend.optim.rule import ParamStep, Rule, next_step, scalar_dtype


class AdagradRule(Rule):
    hyperparams = ("lr", "lr_decay", "weight_decay", "eps", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.Adagrad,)

    def check(self, opt, group: dict) -> None:
        super().check(opt, group)
        default = opt.defaults.get("initial_accumulator_value", 0)
        if group.get("initial_accumulator_value", default) != default:
            raise CaptureError("Adagrad's param group sets its own initial_accumulator_value, which torch ignores "
                               "(it fills every accumulator with the constructor's value): pass it to the "
                               "constructor instead")

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("step", "sum")

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        # the defaults' value, as torch uses; check() refused a group whose own value differs
        state["sum"] = torch.full_like(p, group["initial_accumulator_value"], memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, lr_decay, wd = group["lr"], group["lr_decay"], group["weight_decay"]
        step = next_step(state["step"])
        clr = lr / (1 + (step - 1) * lr_decay)
        s = {"eps": group["eps"], "neg_clr": -clr}
        if wd != 0:
            s["weight_decay"] = wd
        return ParamStep(s, (bool(group["maximize"]), wd != 0))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        maximize, decay = flags
        if grad.is_sparse:
            raise CaptureError("Adagrad gets a sparse gradient (an nn.Embedding(sparse=True)?); acir captures dense "
                               "tensor programs: build the layer with sparse=False")
        state["step"] += 1
        if maximize:
            grad = -grad
        if decay:
            grad = grad.add(p, alpha=s["weight_decay"])
        state_sum = state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(s["eps"])
        p.addcdiv_(grad, std, value=s["neg_clr"])
