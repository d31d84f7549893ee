"""RMSprop (centered, momentum, weight decay, maximize): ``torch.optim.rmsprop._single_tensor_rmsprop``
with ``capturable=False``.

Its state is made before the first update, all zeros: ``step``, ``square_avg``, and
``momentum_buffer`` / ``grad_avg`` only when the group has ``momentum > 0`` / ``centered``
at that moment, as ``_init_group`` does. The step count is incremented (in the graph) but
no float depends on it. A momentum or ``centered`` switched on after the state was made
finds no buffer, in torch (a KeyError) as here (refused when capturing).
"""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule, scalar_dtype


class RMSpropRule(Rule):
    hyperparams = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.RMSprop,)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return (("step", "square_avg") + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.zeros((), dtype=scalar_dtype())
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, alpha, wd, momentum = group["lr"], group["alpha"], group["weight_decay"], group["momentum"]
        s = {"alpha": alpha, "one_minus_alpha": 1 - alpha, "eps": group["eps"], "neg_lr": -lr}
        if wd != 0:
            s["weight_decay"] = wd
        if momentum > 0:
            s["momentum"] = momentum
        return ParamStep(s, (bool(group["maximize"]), wd != 0, bool(group["centered"]), momentum > 0))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        maximize, decay, centered, momentum = flags
        if maximize:
            grad = -grad
        square_avg = state["square_avg"]
        state["step"] += 1
        if decay:
            grad = grad.add(p, alpha=s["weight_decay"])
        square_avg.mul_(s["alpha"]).addcmul_(grad, grad, value=s["one_minus_alpha"])
        if centered:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, s["one_minus_alpha"])
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(s["eps"])
        if momentum:
            buf = state["momentum_buffer"]
            buf.mul_(s["momentum"]).addcdiv_(grad, avg)
            p.add_(buf, alpha=s["neg_lr"])
        else:
            p.addcdiv_(grad, avg, value=s["neg_lr"])
