"""The ``block-checkpoint`` pass: ``torch.utils.checkpoint`` around every block, as an acir plan.

The simplest peer of acir wraps each repeated block of a model (a ResNet bottleneck, a
transformer layer) in ``torch.utils.checkpoint``: the block's activations are dropped in the
forward, only its input kept, and its forward is replayed once at the start of its backward,
every replayed value kept until the block's backward is done. Written as a plan in acir's
schedule model (:func:`acir.analysis.problem.schedule`), that is: recompute every candidate a
block makes, except what leaves the block (its output, read by the next block or the head),
and *retain* them all, so each is recomputed once, at the first point of its block's
backward that needs it. The peer is then priced by the same cost model and simulator as
every planner, the MILP can start from it (and so is never worse), and the rewrite realises
it. Blocks are found as acir-bench finds them (:func:`acir.analysis.candidates.block_paths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from acir.ir.analyses import LIVENESS, PLAN, PROFILE
from acir.ir.graph import Module, Region
from acir.passes.planner_base import FixedPlanner, PlannerResult, run_planner

__all__ = ["BlockCheckpoint", "block_boundaries", "block_plan"]


def block_plan(cands) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(candidates to recompute and retain, the blocks) for checkpointing every block of ``cands``'s graph."""
    from acir.analysis.candidates import block_paths, candidate_blocks

    g = cands.graph
    blocks = block_paths(g)
    where = candidate_blocks(cands, blocks)
    if not blocks:
        return (), ()
    # what a block hands on: a candidate read in the forward by a node outside its block
    storage_of = {vid: v.storage for vid, v in g.values.items()}
    index = {sid: k for k, sid in enumerate(cands.storages)}
    leaves: set[int] = set()
    for n in g.nodes:
        if n.region is not Region.FORWARD:
            continue
        mine = next((k for k, b in enumerate(blocks) if n.module == b or n.module.startswith(b + ".")), -1)
        for vid in n.input_ids():
            k = index.get(storage_of[vid])
            if k is not None and where[k] >= 0 and where[k] != mine:
                leaves.add(k)
    p = cands.problem
    chosen = tuple(k for k in range(p.n_candidates) if where[k] >= 0 and k not in leaves and p.allowed[k])
    return chosen, tuple(blocks)


def block_boundaries(cands) -> tuple[int, ...]:
    """Candidates that cross a block boundary: made in the forward by a node of one block (or of
    none) and read in the forward by a node of another (or of none) — each block's input and
    output, what checkpointing keeps. Keeping them stops retained replays from chaining from one
    block into the next. Empty when the graph has no blocks."""
    from acir.analysis.candidates import block_paths

    g = cands.graph
    blocks = block_paths(g)
    if not blocks:
        return ()

    def block_of(module: str) -> int:
        return next((k for k, b in enumerate(blocks) if module == b or module.startswith(b + ".")), -1)

    index = {sid: k for k, sid in enumerate(cands.storages)}
    made: dict[int, int] = {}  # candidate -> block of the forward node that made its storage
    out: set[int] = set()
    for n in g.nodes:
        if n.region is not Region.FORWARD:
            continue
        mine = block_of(n.module)
        for vid in n.input_ids():
            k = index.get(g.values[vid].storage)
            if k is not None and k in made and made[k] != mine:
                out.add(k)
        for vid in n.output_ids():
            k = index.get(g.values[vid].storage)
            if k is not None:
                made.setdefault(k, mine)
    return tuple(sorted(out))


@dataclass(frozen=True)
class BlockCheckpoint(FixedPlanner):
    """Checkpoint every repeated block (torch.utils.checkpoint's schedule), a baseline plan: replay each block once."""

    name: ClassVar[str] = "block-checkpoint"
    requires = (PROFILE, LIVENESS)
    preserves = (PROFILE, LIVENESS)
    ensures = (PLAN,)

    def run(self, module: Module):
        from acir.analysis.candidates import build
        from acir.analysis.problem import evaluate

        cands = build(module)
        chosen, blocks = block_plan(cands)

        def solve(problem, budget):
            return PlannerResult(chosen, evaluate(problem, chosen, chosen).peak <= budget, retained=chosen)

        from acir.analysis.problem import known_floor

        def floor(p):
            return min(known_floor(p), evaluate(p, chosen, chosen).peak)

        result = run_planner(module, self, self.budget, solve, floor, require_budget=False, cands=cands)
        result.stats["blocks"] = len(blocks)
        return result
