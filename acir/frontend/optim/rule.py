"""How acir reproduces a ``torch.optim`` optimizer's step, bit for bit, with live hyper-parameters.

A captured step must train exactly as the user's eager loop does, with the optimizer as
the user built it, while its schedule changes the learning rate (and betas, momentum ...)
at every call. torch's own step mixes two kinds of arithmetic: Python-float arithmetic on
the host (``1 - beta2``, Adam's bias corrections from the step count, ``-lr``), and tensor
ops that take those floats as ``Scalar`` arguments. A :class:`Rule` splits a torch class's
single-tensor step (``torch.optim.<name>._single_tensor_<name>``) along that line:

* :meth:`Rule.host` runs on the host at every call, reads the live ``param_group`` and the
  parameter's state, and returns the floats torch would compute (the same expressions,
  in the same order, in Python floats, so the same bits) and the branch decisions
  (``weight_decay != 0``, a first momentum step ...);
* :meth:`Rule.update` is the tensor half, traced into the graph: the same ops, in the same
  order, with each float taken from the host (a ``HYPERPARAM`` graph input of the IR, fed
  at every call) and each branch fixed by the decisions it was traced with.

The decisions are part of the step's signature: when one changes (a schedule that sets
the momentum to 0, RAdam's rectification switching on), the step is captured again. What
a rule cannot honour (``fused=True``, ``differentiable=True``, a Tensor ``lr``, complex
parameters ...) is refused by :meth:`Rule.check`, before anything is traced.

State that torch creates before the first update (Adam's moments, zeros) is created on the
host by :meth:`Rule.init_state` exactly as torch's ``_init_group`` does; state that torch
makes *from* the first update (SGD's momentum buffer, a copy of the gradient) is allocated
empty on the host and filled by the first step's graph (``first`` decisions), so the
optimizer's ``state_dict()`` after a compiled step is the eager one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from acir.errors import CaptureError


@dataclass(frozen=True)
class ParamStep:
    """One parameter's update at one call, as decided on the host."""

    scalars: dict[str, float]      # name -> the float torch would pass (a HYPERPARAM graph input)
    flags: tuple                   # the branch decisions; part of the step's signature


class Rule:
    """The single-tensor step of one ``torch.optim`` class family (see the module docstring)."""

    #: The optimizer classes this rule reproduces (exact types: a subclass may change ``step``).
    classes: ClassVar[tuple[type, ...]] = ()
    #: The per-group options torch's step reads (and so the rule reads, at every call).
    hyperparams: ClassVar[tuple[str, ...]] = ()

    def check(self, opt, group: dict) -> None:
        """Refuse, with one sentence, a configuration this rule does not reproduce."""
        name = type(opt).__name__
        for key in ("fused", "differentiable", "capturable"):
            if group.get(key):
                raise CaptureError(f"{name}({key}=True) is not supported: acir reproduces the default single-tensor "
                                   f"step; build the optimizer with {key}=False")
        if group.get("foreach") or (group.get("foreach") is None and _torch_picks_foreach(group["params"])):
            raise CaptureError(f"{name} would run torch's foreach kernels here (foreach=True, or the default for "
                               "these parameters' device), and acir reproduces the single-tensor step: build the "
                               "optimizer with foreach=False")
        for key in self.hyperparams:
            value = group.get(key)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if hasattr(v, "shape"):
                    raise CaptureError(f"{name}'s {key} is a Tensor: acir reads hyper-parameters as Python numbers "
                                       "at every step; give a float (schedulers set floats)")

    def state_keys(self, group: dict) -> tuple[str, ...]:
        """The state entries of a parameter of ``group``, in graph-input order."""
        raise NotImplementedError

    def init_state(self, group: dict, p, state: dict) -> set[str]:
        """Create on the host the state torch would have when this step's update starts; returns
        the keys it created (a first step's decisions may depend on them)."""
        raise NotImplementedError

    def host(self, group: dict, state: dict, created: set[str]) -> ParamStep:
        """This call's floats and decisions for one parameter (before the update runs)."""
        raise NotImplementedError

    def update(self, p, grad, state: dict[str, Any], s: dict[str, float], flags: tuple) -> None:
        """The tensor half of the update, traced into the graph (under ``torch.no_grad``)."""
        raise NotImplementedError


def _torch_picks_foreach(params) -> bool:
    """Would torch's step, with ``foreach=None``, use its foreach kernels for ``params`` (on CUDA it does)?"""
    from torch.optim.optimizer import _default_to_fused_or_foreach

    return bool(_default_to_fused_or_foreach(list(params), differentiable=False, use_fused=False)[1])


def next_step(step_tensor) -> float:
    """The step count after torch's ``step_t += 1``, as ``_get_value`` reads it: the addition
    in the tensor's own dtype (float32 stops counting at 2**24, and so must this)."""
    dtype = np.float64 if "float64" in str(step_tensor.dtype) else np.float32
    return float(dtype(step_tensor.item()) + dtype(1))


def scalar_dtype():
    """The dtype torch gives a step counter (``torch.optim.optimizer._get_scalar_dtype``)."""
    import torch

    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
