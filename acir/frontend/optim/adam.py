"""Adam and AdamW (weight decay coupled or decoupled, AMSGrad, maximize):
``torch.optim.adam._single_tensor_adam`` with ``capturable=False``.

The bias corrections come from the step count on the host, as torch computes them after
``.item()`` (``1 - beta1 ** step``, ``lr / bias_correction1``, ``bias_correction2 ** 0.5``);
the graph increments the step tensor itself, as torch's ``step_t += 1`` does.
"""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule, next_step, scalar_dtype


class AdamRule(Rule):
    hyperparams = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.Adam, torch.optim.AdamW)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype(), device="cpu")
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, (beta1, beta2), wd, eps = group["lr"], group["betas"], group["weight_decay"], group["eps"]
        decoupled = bool(group.get("decoupled_weight_decay", False))
        step = next_step(state["step"])
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        s = {"one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2,
             "bias_correction2_sqrt": bias_correction2_sqrt, "eps": eps, "neg_step_size": -step_size}
        if wd != 0:
            if decoupled:
                s["decay"] = 1 - lr * wd
            else:
                s["weight_decay"] = wd
        return ParamStep(s, (bool(group["maximize"]), wd != 0, decoupled, bool(group["amsgrad"])))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        import torch

        maximize, decay, decoupled, amsgrad = flags
        if maximize:
            grad = -grad
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        if decay:
            if decoupled:
                p.mul_(s["decay"])
            else:
                grad = grad.add(p, alpha=s["weight_decay"])
        exp_avg.lerp_(grad, s["one_minus_beta1"])
        exp_avg_sq.mul_(s["beta2"]).addcmul_(grad, grad, value=s["one_minus_beta2"])
        if amsgrad:
            peak = state["max_exp_avg_sq"]
            torch.maximum(peak, exp_avg_sq, out=peak)
            denom = (peak.sqrt() / s["bias_correction2_sqrt"]).add_(s["eps"])
        else:
            denom = (exp_avg_sq.sqrt() / s["bias_correction2_sqrt"]).add_(s["eps"])
        p.addcdiv_(exp_avg, denom, value=s["neg_step_size"])
