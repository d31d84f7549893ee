"""The passes acir knows, by pipeline name, imported only when a pipeline names them.

Lazy import keeps ``acir-opt --help`` and pipeline errors fast: a pass module may pull in
torch or a solver, and nothing should pay for that until the pass is used. Adding a pass
is one line here; ``tests/test_registry.py`` checks that every key equals its pass's
``name``.
"""

from __future__ import annotations

import difflib
import importlib

from acir.errors import ParseError
from acir.pipeline.pass_base import Pass
from acir.pipeline.syntax import PassSpec, parse_pipeline

#: Pipeline name -> "module:Class".
PASSES: dict[str, str] = {
    "block-checkpoint": "acir.passes.block_checkpoint:BlockCheckpoint",
    "chen-sqrt": "acir.passes.chen_sqrt:ChenSqrt",
    "dce": "acir.passes.dce:DeadCodeElimination",
    "ddp": "acir.passes.ddp:DataParallel",
    "fsdp": "acir.passes.fsdp:ShardedDataParallel",
    "interleave-optimizer": "acir.passes.interleave_optimizer:InterleaveOptimizer",
    "keep-all": "acir.passes.keep_all:KeepAll",
    "liveness": "acir.passes.liveness:Liveness",
    "mutwo": "acir.passes.mutwo:MuTwo",
    "optimal": "acir.passes.optimal:Optimal",
    "profile": "acir.passes.profile:Profile",
    "recompute-all": "acir.passes.recompute_all:RecomputeAll",
    "rewrite": "acir.passes.rewrite:Rewrite",
}


def names() -> list[str]:
    """Every registered pass name, sorted."""
    return sorted(PASSES)


def pass_class(name: str) -> type[Pass]:
    """The pass class registered as ``name``, importing its module now."""
    target = PASSES.get(name)
    if target is None:
        close = difflib.get_close_matches(name, PASSES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ParseError(f"unknown pass '{name}'; {hint}known passes: {', '.join(names())} "
                         "(acir-opt --list-passes)")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"registry entry {name!r} -> {target!r} is not a Pass subclass")
    return cls


def instantiate(spec: PassSpec) -> Pass:
    """The pass ``spec`` names, with its options parsed by their declared types."""
    return pass_class(spec.name).from_options(spec.options)


def build_pipeline(text: str) -> list[Pass]:
    """Pipeline text -> pass instances; every error is a :class:`ParseError` saying where."""
    return [instantiate(s) for s in parse_pipeline(text)]


__all__ = ["PASSES", "build_pipeline", "instantiate", "names", "pass_class"]
