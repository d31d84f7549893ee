"""Analysis blocks: what passes learn about a graph, kept in the artifact beside it.

Each kind of block has a typed :class:`AnalysisKey` (:data:`PROFILE`, :data:`LIVENESS`,
:data:`PLAN`): its name in the artifact, its class, and the pass that produces it. A
module keeps its blocks in :class:`Analyses`, a mapping from key to block that refuses a
block of the wrong class. Each block is stamped with the graph ``revision`` it was
computed at, and :func:`require` is the one place that decides whether a block is fresh
(its revision is the header's): the pass manager asks it before every pass, and so does
every other reader that needs current numbers. Blocks are plain data; the passes that
compute them are ``profile`` (measured), ``liveness`` (static, with the memory simulator)
and the planners (``plan``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Iterator, TypeVar

from acir.errors import PreconditionError
from acir.ir.graph import Role

if TYPE_CHECKING:
    from acir.ir.graph import Module

T = TypeVar("T")


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
    retained: bool = False      # recomputed once, at the first point that needs it, and kept from there


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
    #: the profile the plan's times came from: "method=… reps=… malloc=… times=sha256:…" ("" when unknown).
    #: Plans follow measured times, so two profiles of one model can give two plans; equal digests, equal times.
    profile: str = ""

    def recomputed(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.decision is Decision.RECOMPUTE]


@dataclass(frozen=True)
class AnalysisKey(Generic[T]):
    """One kind of analysis block: its name in the artifact and the text form, its class, and
    the pass that computes it (pipeline text, for messages and for the manager)."""

    name: str
    type: type[T]
    producer: str

    def __repr__(self) -> str:
        return f"AnalysisKey({self.name})"


PROFILE: AnalysisKey[Profile] = AnalysisKey("profile", Profile, "profile")
LIVENESS: AnalysisKey[Liveness] = AnalysisKey("liveness", Liveness, "liveness")
PLAN: AnalysisKey[Plan] = AnalysisKey("plan", Plan, "")  # any planner: mutwo, optimal, ...

#: The keys of the artifact's blocks, in artifact (and text) order.
KEYS: tuple[AnalysisKey, ...] = (PROFILE, LIVENESS, PLAN)
BY_NAME: dict[str, AnalysisKey] = {k.name: k for k in KEYS}


class Analyses:
    """A module's analysis blocks by :class:`AnalysisKey`; iteration is in :data:`KEYS` order
    (keys of other kinds, which tests may define, after them)."""

    __slots__ = ("_blocks",)

    def __init__(self, blocks: dict[AnalysisKey, object] | None = None) -> None:
        self._blocks: dict[AnalysisKey, object] = {}
        for key, block in (blocks or {}).items():
            self[key] = block

    def __setitem__(self, key: AnalysisKey[T], block: T) -> None:
        if not isinstance(key, AnalysisKey):
            raise TypeError(f"analyses are keyed by AnalysisKey (acir.ir.analyses.PLAN ...), not {key!r}")
        if not isinstance(block, key.type):
            raise TypeError(f"the {key.name} analysis must be a {key.type.__name__}, not {type(block).__name__}")
        self._blocks[key] = block

    def __getitem__(self, key: AnalysisKey[T]) -> T:
        return self._blocks[key]  # type: ignore[return-value]

    def get(self, key: AnalysisKey[T]) -> T | None:
        return self._blocks.get(key)  # type: ignore[return-value]

    def pop(self, key: AnalysisKey[T], default: T | None = None) -> T | None:
        return self._blocks.pop(key, default)  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return key in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[AnalysisKey]:
        order = {k: i for i, k in enumerate(KEYS)}
        return iter(sorted(self._blocks, key=lambda k: (order.get(k, len(order)), k.name)))

    def items(self) -> list[tuple[AnalysisKey, object]]:
        return [(k, self._blocks[k]) for k in self]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analyses) and self._blocks == other._blocks

    def __repr__(self) -> str:
        return "Analyses(" + ", ".join(k.name for k in self) + ")"


def fresh(module: Module, key: AnalysisKey[T]) -> T | None:
    """The ``key`` block of ``module`` if it was computed at the current graph revision, else None."""
    block = module.analyses.get(key)
    return block if block is not None and getattr(block, "revision", None) == module.header.revision else None


def require(module: Module, key: AnalysisKey[T], who: str, fix: str = "") -> T:
    """The fresh ``key`` block of ``module``, or a :class:`PreconditionError` that says why
    ``who`` cannot have it and how to fix that (``fix`` replaces the default advice)."""
    block = module.analyses.get(key)
    if block is None:
        how = fix or (f"add {key.producer} before {who}" if key.producer
                      else f"add a pass that computes it before {who} (acir-opt --list-passes)")
        raise PreconditionError(f"{who} requires {key.name}; {how}")
    rev = getattr(block, "revision", None)
    if rev != module.header.revision:
        when = "it carries no revision" if rev is None else f"computed at revision {rev}"
        how = fix or f"re-run {key.producer or 'a pass that computes it'} before {who}"
        raise PreconditionError(f"{who} requires {key.name}, but it is stale ({when}, the graph is at "
                                f"revision {module.header.revision}); {how}")
    return block  # type: ignore[return-value]
