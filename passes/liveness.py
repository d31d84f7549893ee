"""The ``liveness`` pass: storage lifetimes and the simulated memory timeline, as an analysis.

Every planner asks the same questions of a graph - which storages are activations, how
long each sits idle between its last forward and first backward use, and where the
memory peak is and what it is made of - so they are answered once, here, by the static
simulator (:mod:`acir.analysis.simulator`), and kept in the artifact as the ``liveness`` block,
stamped with the graph revision. Inactive times need run times: they come from the
``profile`` block when one computed at the current revision is present, and are zero
otherwise (``used_profile`` says which). The graph is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from acir.analysis.simulator import simulate, storage_lives
from acir.ir import analyses
from acir.ir.analyses import LIVENESS, PROFILE
from acir.ir.graph import Module
from acir.pipeline.pass_base import Pass, PassResult


@dataclass(frozen=True)
class Liveness(Pass):
    """Compute storage lifetimes, inactive times and the simulated memory peak (no graph change).

    Writes the ``liveness`` analysis: per storage its defining node, last use, first/last
    forward and backward uses, whether it is an activation and its inactive time (from a
    fresh ``profile`` if present), the live-bytes timeline, the peak, its node and its
    split by role, and the persistent (graph-input) bytes.
    """

    name = "liveness"
    ensures = (LIVENESS,)

    def run(self, module: Module) -> PassResult:
        g = module.graph
        rev = module.header.revision
        prof = module.analyses.get(PROFILE)
        fresh = isinstance(prof, analyses.Profile) and prof.revision == rev
        lives = storage_lives(g, prof.run_s() if fresh else None)
        tl = simulate(g, lives)
        peak_node = g.nodes[tl.peak_rank].id if tl.peak_rank >= 0 else -1
        module.analyses[LIVENESS] = analyses.Liveness(
            revision=rev, storages=lives, timeline=tl.live, simulated_peak_bytes=tl.peak_bytes,
            peak_node=peak_node, peak_by_role=tl.peak_by_role(), persistent_bytes=tl.persistent_bytes,
            used_profile=fresh)
        nbytes = {s.id: s.nbytes for s in g.storages}
        acts = [life for life in lives if life.activation]
        return PassResult(False, {"simulated_peak_bytes": tl.peak_bytes, "peak_node": peak_node,
                                  "activations": len(acts),
                                  "activation_bytes": sum(nbytes[life.storage] for life in acts)})


__all__ = ["Liveness"]
