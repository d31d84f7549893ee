"""RAdam (weight decay coupled or decoupled, maximize): ``torch.optim.radam._single_tensor_radam``
with ``capturable=False``.

Whether the variance is rectified (``rho_t > 5``) is decided on the host from the step
count, as torch decides it in Python; it is a branch decision, so the step is captured
again when the rectification switches on (after a handful of steps with the usual betas).
The rectification term and the bias corrections are host floats; torch's
``(bias_correction2 ** 0.5) / exp_avg_sq_sqrt`` (a float divided by a tensor: a reciprocal,
then a multiplication) is written the same way so that it is traced into the same ops.
"""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule, next_step, scalar_dtype


class RAdamRule(Rule):
    hyperparams = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.RAdam,)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("step", "exp_avg", "exp_avg_sq")

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, (beta1, beta2), wd, eps = group["lr"], group["betas"], group["weight_decay"], group["eps"]
        decoupled = bool(group.get("decoupled_weight_decay", False))
        step = next_step(state["step"])
        s = {"one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2, "lr": lr}
        if wd != 0:
            if decoupled:
                s["decay"] = 1 - lr * wd
            else:
                s["weight_decay"] = wd
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        s["bias_correction1"] = bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        rectify = rho_t > 5.0
        if rectify:
            s["eps"] = eps
            s["bias_correction2_sqrt"] = bias_correction2**0.5
            s["rect"] = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return ParamStep(s, (bool(group["maximize"]), wd != 0, decoupled, rectify))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        maximize, decay, decoupled, rectify = flags
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
        bias_corrected_exp_avg = exp_avg / s["bias_correction1"]
        if rectify:
            scaled = bias_corrected_exp_avg * s["lr"]
            exp_avg_sq_sqrt = exp_avg_sq.sqrt().add_(s["eps"])
            adaptive_lr = s["bias_correction2_sqrt"] / exp_avg_sq_sqrt
            p.add_(scaled * adaptive_lr * s["rect"], alpha=-1.0)
        else:
            p.add_(bias_corrected_exp_avg * s["lr"], alpha=-1.0)
