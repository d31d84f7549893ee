"""SGD (momentum, dampening, Nesterov, weight decay, maximize): ``torch.optim.sgd._single_tensor_sgd``."""

from __future__ import annotations

from typing import Any

from acir.frontend.optim.rule import ParamStep, Rule


class SGDRule(Rule):
    hyperparams = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

    @property
    def classes(self):  # type: ignore[override]
        import torch

        return (torch.optim.SGD,)

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        import torch

        if group["momentum"] != 0 and state.get("momentum_buffer") is None:
            # torch makes it from the first update (a copy of the gradient): allocated here, filled there
            state["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
            return {"momentum_buffer"}
        return set()

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        wd, momentum, lr = group["weight_decay"], group["momentum"], group["lr"]
        flags = (bool(group["maximize"]), wd != 0, momentum != 0, bool(group["nesterov"]),
                 "momentum_buffer" in created)
        s = {"neg_lr": -lr}
        if wd != 0:
            s["weight_decay"] = wd
        if momentum != 0:
            s["momentum"] = momentum
            s["one_minus_dampening"] = 1 - group["dampening"]
        return ParamStep(s, flags)

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        maximize, decay, momentum, nesterov, first = flags
        if maximize:
            grad = -grad
        if decay:
            grad = grad.add(p, alpha=s["weight_decay"])
        if momentum:
            buf = state["momentum_buffer"]
            if first:
                buf.copy_(grad)  # torch: buf = grad.detach().clone()
            else:
                buf.mul_(s["momentum"]).add_(grad, alpha=s["one_minus_dampening"])
            grad = grad.add(buf, alpha=s["momentum"]) if nesterov else buf
        p.add_(grad, alpha=s["neg_lr"])
