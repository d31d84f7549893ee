"""Analysis blocks: what passes learn about a graph, kept in the artifact beside it.

Each block is stamped with the graph ``revision`` it was computed at; the pass manager
refuses a pass whose required analysis is missing or stale (its revision differs from
the header's). Blocks are plain data; the passes that compute them are ``profile``
(measured) and ``liveness`` (static, with the memory simulator).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from acir.ir.graph import Role


@dataclass(slots=True)
class NodeProfile:
    node: int              # Node.id
    run_s: float           # median run time
    alloc_bytes: int       # bytes of new storages it returned
    freed_bytes: int       # bytes released right after it
    peak_bytes: int        # live bytes right after it ran, before releases
    live_bytes: int        # live bytes after releases


@dataclass(slots=True)
class Profile:
    revision: int
    device: str
    method: str
    reps: int
    warmup: int
    torch_version: str
    malloc: str
    nodes: list[NodeProfile]
    measured_peak_bytes: int
    peak_node: int
    iteration_s: float

    def run_s(self) -> dict[int, float]:
        """Node id -> median run time."""
        return {p.node: p.run_s for p in self.nodes}


@dataclass(slots=True)
class StorageLife:
    storage: int
    defined: int           # rank of the defining node; -1 for graph inputs
    last_use: int          # rank of the last reading node; len(nodes) for outputs and inputs
    last_fw_use: int = -1
    first_bw_use: int = -1
    last_bw_use: int = -1
    activation: bool = False
    inactive_s: float = 0.0


@dataclass(slots=True)
class Liveness:
    revision: int
    storages: list[StorageLife]
    timeline: list[int]    # simulated live bytes while each node runs
    simulated_peak_bytes: int
    peak_node: int         # Node.id
    peak_by_role: dict[Role, int] = field(default_factory=dict)
    persistent_bytes: int = 0
    used_profile: bool = False


class Decision(enum.Enum):
    KEEP = 1
    RECOMPUTE = 2
    OFFLOAD = 3


@dataclass(slots=True)
class TensorPlan:
    """The decision for one activation (a storage kept from the forward for the backward)."""

    storage: int
    decision: Decision
    reason: str = ""            # why it must be kept ("random op", "updates a buffer", ...); "" if free to choose
    srcs: list[int] = field(default_factory=list)  # storages its recomputation starts from
    recompute_s: float = 0.0    # run time of one recomputation
    recompute_count: int = 0    # how many times it is recomputed (0 when kept)


@dataclass(slots=True)
class Plan:
    revision: int
    planner: str                # the pass spec that made it, e.g. "mutwo{budget=60%}"
    budget_bytes: int
    predicted_peak_bytes: int
    predicted_recompute_s: float
    solve_s: float
    no_ac_peak_bytes: int       # the simulated peak without recomputation
    floor_bytes: int            # the smallest peak recomputation can reach (everything allowed recomputed)
    tensors: list[TensorPlan]
    optimality_gap: float = -1.0  # MILP gap of the optimal planner; -1 for heuristics

    def recomputed(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.decision is Decision.RECOMPUTE]


#: The analysis blocks by their name in ``Module.analyses``, in artifact order.
ANALYSES = {"profile": Profile, "liveness": Liveness, "plan": Plan}
