"""From IR names back to torch objects: operator overloads and argument values.

The IR stores an operator by its overload name ("aten.convolution.default") so that an
artifact is self-contained; this module resolves those names with ``torch.ops`` and turns
IR arguments back into the Python values the operator expects.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from acir.errors import RunError
from acir.ir.graph import Device, DType, Layout, MemoryFormat, ValueRef


@functools.lru_cache(maxsize=None)
def resolve_op(name: str):
    """The ``torch._ops.OpOverload`` for ``"ns.op.overload"``."""
    import torch

    parts = name.split(".")
    if len(parts) < 3:
        raise RunError(f"bad operator name {name!r}; expected namespace.op.overload")
    ns, op, overload = parts[0], ".".join(parts[1:-1]), parts[-1]
    if ns == "acir":
        import importlib

        for defining in ("acir.ir.acir_ops",):  # importing it defines torch.ops.acir
            importlib.import_module(defining)
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


#: Words in an overload name that mark an op drawing random numbers (it advances the RNG).
#: torch's functional collectives (``torch.ops._c10d_functional``), as IR op names: a launch
#: returns at once and ``wait_tensor`` blocks until it is done.
#: Outputs whose storage size the device's kernel decides, not the op's shape-only (meta) kernel: op
#: name -> {output index: device type}. oneDNN's LSTM layer returns a workspace for its backward that
#: its meta kernel shapes as ``uint8[0]``; on the CPU it holds about 2 MB for a 2-layer, 128-wide LSTM at
#: batch 4. Capture sizes these storages by running the kernel (:mod:`acir.frontend.fx_import`), and
#: the verifier accepts a recorded size at least the meta kernel's (:mod:`acir.ir.rederive`).
DEVICE_SIZED_OUTPUTS: dict[str, dict[int, str]] = {"aten.mkldnn_rnn_layer.default": {3: "cpu"}}
#: Outputs that the meta kernel returns in the storage of another output of the same node, but the
#: device's kernel in a storage of their own: op name -> {output index: device type}. The LSTM layer's
#: backward returns its two bias gradients in one storage on meta and in two on the CPU. Capture adds
#: such an output's bytes to the shared storage (the pair then counts for both, for as long as either
#: lives: never less than the device holds), and the verifier accepts it as it does a device size.
OWN_STORAGE_OUTPUTS: dict[str, dict[int, str]] = {"aten.mkldnn_rnn_layer_backward.default": {4: "cpu"}}

COLLECTIVE_PREFIX = "_c10d_functional."
WAIT_TENSOR = COLLECTIVE_PREFIX + "wait_tensor.default"

RANDOM_WORDS = ("rand", "bernoulli", "dropout", "normal", "uniform", "multinomial", "exponential",
                "geometric", "cauchy", "log_normal", "random_", "poisson")


def is_random(op_name: str) -> bool:
    """Does the overload draw random numbers? (Re-running it would draw different ones.)"""
    name = op_name.lower()
    return any(w in name for w in RANDOM_WORDS)


@functools.lru_cache(maxsize=None)
def mutated_args(op_name: str) -> tuple[str, ...] | None:
    """Names of the arguments the overload writes to (``Tensor(a!)``); None if torch does not know it."""
    try:
        op = resolve_op(op_name)
    except RunError:
        return None
    return tuple(a.name for a in op._schema.arguments if a.alias_info is not None and a.alias_info.is_write)


def written_args(op_name: str, args: list, kwargs: dict) -> dict[str, Any]:
    """The IR arguments an op call writes to, by schema name (``{}`` when it writes none).

    ``None`` for an op torch does not know: the caller must treat it as writing anything."""
    names = mutated_args(op_name)
    if names is None:
        return None  # type: ignore[return-value]
    if not names:
        return {}
    schema = resolve_op(op_name)._schema
    out: dict[str, Any] = {}
    for i, a in enumerate(schema.arguments):
        if a.name in names:
            if i < len(args) and not a.kwarg_only:
                out[a.name] = args[i]
            elif a.name in kwargs:
                out[a.name] = kwargs[a.name]
    return out


def functional_variant(op_name: str) -> str | None:
    """``aten.relu_.default`` -> ``aten.relu.default``, ``aten._log_softmax.out`` ->
    ``aten._log_softmax.default``, when that overload exists; else None."""
    parts = op_name.split(".")
    if len(parts) < 3:
        return None
    if parts[-1] == "out":
        name = ".".join(parts[:-1] + ["default"])
    elif parts[-2].endswith("_"):
        name = ".".join([parts[0], parts[-2][:-1], parts[-1]])
    else:
        return None
    try:
        resolve_op(name)
    except RunError:
        return None
    return name
