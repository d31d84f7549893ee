"""Adamax (weight decay, maximize): ``torch.optim.adamax._single_tensor_adamax`` with ``capturable=False``.

The bias-corrected learning rate ``lr / (1 - beta1 ** step)`` comes from the step count on
the host, as torch computes it after ``.item()``; the graph increments the step tensor and
keeps torch's ``torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(eps), out=exp_inf)``.
"""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule, next_step, scalar_dtype


class AdamaxRule(Rule):
    hyperparams = ("lr", "betas", "eps", "weight_decay", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.Adamax,)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("step", "exp_avg", "exp_inf")

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_inf"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        step = next_step(state["step"])
        bias_correction = 1 - beta1**step
        clr = lr / bias_correction
        s = {"one_minus_beta1": 1 - beta1, "beta2": beta2, "eps": group["eps"], "neg_clr": -clr}
        if wd != 0:
            s["weight_decay"] = wd
        return ParamStep(s, (bool(group["maximize"]), wd != 0))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        import torch

        maximize, decay = flags
        if maximize:
            grad = -grad
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        state["step"] += 1
        if decay:
            grad = grad.add(p, alpha=s["weight_decay"])
        exp_avg.lerp_(grad, s["one_minus_beta1"])
        torch.maximum(exp_inf.mul_(s["beta2"]), grad.abs().add_(s["eps"]), out=exp_inf)
        p.addcdiv_(exp_avg, exp_inf, value=s["neg_clr"])
