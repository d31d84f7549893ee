"""The optimizer's updates at one call, decided on the host: which parameters, which floats, which branches.

:func:`plan_updates` walks the optimizer's param groups as torch's ``step`` does (group by
group, parameter by parameter), creates the state torch would have at this point
(:meth:`~acir.frontend.optim.rule.Rule.init_state`) and asks the rule for this call's floats
and branch decisions. The same :class:`Updates` serves the capture (its decisions are traced,
its floats replaced by placeholders that become ``HYPERPARAM`` graph inputs) and every call
(its floats are fed to those inputs; its signature picks the captured graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.frontend.optim.rule import ParamStep, Rule


@dataclass
class ParamUpdate:
    name: str               # the model's name of the parameter
    param: object           # the parameter (torch.nn.Parameter)
    group: int              # index of its param group
    step: ParamStep
    created: set[str] = field(default_factory=set)  # state keys created for this call


@dataclass
class Updates:
    rule: Rule
    items: list[ParamUpdate]

    def signature(self) -> tuple:
        """What the captured graph depends on: the parameters, their groups and the branch decisions."""
        return tuple((u.name, u.group, u.step.flags) for u in self.items)

    def scalar_values(self) -> dict[str, float]:
        """``"<param>:<float>"`` -> value, the HYPERPARAM inputs of this call."""
        return {f"{u.name}:{k}": float(v) for u in self.items for k, v in u.step.scalars.items()}

    def discard_created(self, keep: set[str], state) -> None:
        """Remove the state created for parameters not in ``keep`` (those that got no gradient:
        torch never makes state for them)."""
        for u in self.items:
            if u.name not in keep and u.param in state:
                for key in u.created:
                    state[u.param].pop(key, None)
                if not state[u.param]:
                    state.pop(u.param, None)


def plan_updates(model, opt, rule: Rule, only: set[str] | None = None) -> Updates:
    """This call's updates of every trainable parameter (or of those named in ``only``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    items = []
    for gi, group in enumerate(opt.param_groups):
        for p in group["params"]:
            if not p.requires_grad:
                continue
            name = names.get(id(p))
            if name is None:
                from acir.errors import CaptureError

                raise CaptureError(f"{type(opt).__name__} holds a parameter that is not in the model (was one "
                                   "replaced since compiling?); give the optimizer the model's own parameters")
            if only is not None and name not in only:
                continue
            state = opt.state[p] if p in opt.state else {}  # opt.state is a defaultdict: do not add entries
            created = rule.init_state(group, p, state)
            if state and p not in opt.state:
                opt.state[p] = state
            items.append(ParamUpdate(name, p, gi, rule.host(group, state, created), created))
    return Updates(rule, items)
