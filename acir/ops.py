"""From IR names back to torch objects: operator overloads and argument values.

The IR stores an operator by its overload name ("aten.convolution.default") so that an
artifact is self-contained; this module resolves those names with ``torch.ops`` and turns
IR arguments back into the Python values the operator expects.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from acir.errors import RunError
from acir.ir import Device, DType, Layout, MemoryFormat, ValueRef


@functools.lru_cache(maxsize=None)
def resolve_op(name: str):
    """The ``torch._ops.OpOverload`` for ``"ns.op.overload"``."""
    import torch

    parts = name.split(".")
    if len(parts) < 3:
        raise RunError(f"bad operator name {name!r}; expected namespace.op.overload")
    ns, op, overload = parts[0], ".".join(parts[1:-1]), parts[-1]
    try:
        return getattr(getattr(getattr(torch.ops, ns), op), overload)
    except (AttributeError, RuntimeError):
        raise RunError(f"operator {name} does not exist in torch {torch.__version__}; "
                       "the artifact may come from another torch version") from None


def to_torch(arg, value: Callable[[int], Any]):
    """An IR argument as a Python/torch value; ``value(id)`` supplies each referenced value."""
    import torch

    if isinstance(arg, ValueRef):
        return value(arg.id)
    if isinstance(arg, list):
        return [to_torch(a, value) for a in arg]
    if isinstance(arg, DType):
        return getattr(torch, arg.name)
    if isinstance(arg, Device):
        return torch.device(arg.name)
    if isinstance(arg, Layout):
        return getattr(torch, arg.name)
    if isinstance(arg, MemoryFormat):
        return getattr(torch, arg.name)
    return arg
