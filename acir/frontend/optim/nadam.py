"""NAdam (momentum_decay, weight decay coupled or decoupled, maximize):
``torch.optim.nadam._single_tensor_nadam`` with ``capturable=False``.

``mu_product``, the running product of the momentum schedule, is a 0-d CPU tensor of the
state: torch multiplies it in place (``mu_product *= mu``, a tensor op in the state's
dtype, float32 by default), then reads it back with ``.item()`` for the two step sizes.
The graph does the multiplication on the state as torch does; the host, which runs before
the graph, gets the product torch will read by running the same op on a copy of the
state, so ``-lr * (1 - mu) / (1 - mu_product)`` and the ``mu_next`` step size are the
floats torch computes. ``mu`` and ``mu_next`` come from the step count after the graph's
increment (:func:`~acir.frontend.optim.rule.next_step`).
"""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule, next_step, scalar_dtype


class NAdamRule(Rule):
    hyperparams = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.NAdam,)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if len(state) != 0:
            return set()
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state["mu_product"] = torch.tensor(1.0, dtype=scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return set(state)

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        momentum_decay = group["momentum_decay"]
        decoupled = bool(group.get("decoupled_weight_decay", False))
        step = next_step(state["step"])
        bias_correction2 = 1 - beta2**step
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        product = state["mu_product"].detach().clone()
        product *= mu  # torch's in-place multiplication of the state, on a copy: the value .item() will read
        mu_product = product.item()
        mu_product_next = mu_product * mu_next
        s = {"mu": mu, "one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2,
             "bias_correction2": bias_correction2, "eps": group["eps"],
             "grad_step": -lr * (1.0 - mu) / (1.0 - mu_product),
             "avg_step": (-lr * mu_next) / (1.0 - mu_product_next)}
        if wd != 0:
            if decoupled:
                s["decay"] = 1 - lr * wd
            else:
                s["weight_decay"] = wd
        return ParamStep(s, (bool(group["maximize"]), wd != 0, decoupled))

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        maximize, decay, decoupled = flags
        if maximize:
            grad = -grad
        exp_avg, exp_avg_sq, mu_product = state["exp_avg"], state["exp_avg_sq"], state["mu_product"]
        state["step"] += 1
        if decay:
            if decoupled:
                p.mul_(s["decay"])
            else:
                grad = grad.add(p, alpha=s["weight_decay"])
        mu_product.mul_(s["mu"])  # torch: mu_product *= mu
        exp_avg.lerp_(grad, s["one_minus_beta1"])
        exp_avg_sq.mul_(s["beta2"]).addcmul_(grad, grad, value=s["one_minus_beta2"])
        denom = exp_avg_sq.div(s["bias_correction2"]).sqrt()
        denom.add_(s["eps"])
        p.addcdiv_(grad, denom, value=s["grad_step"])
        p.addcdiv_(exp_avg, denom, value=s["avg_step"])
