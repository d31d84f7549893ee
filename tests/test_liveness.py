"""The ``liveness`` pass: golden text, the analysis it writes, profiles fresh and stale, and staleness."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import pytest
from ir_fixtures import big_module, small_module

from acir.analysis.simulator import simulate, storage_lives
from acir.errors import PreconditionError
from acir.ir import analyses
from acir.ir.analyses import LIVENESS, PROFILE
from acir.ir.graph import Module, Role
from acir.ir.serde import dumps, loads
from acir.ir.text import parse_module, print_module
from acir.pipeline import registry
from acir.pipeline.manager import PassManager
from acir.pipeline.pass_base import Pass, PassResult
from acir.pipeline.registry import build_pipeline

GOLDEN = pathlib.Path(__file__).parent / "golden" / "liveness.acir.txt"


def _run(module: Module, pipeline: str = "liveness"):
    return PassManager(build_pipeline(pipeline)).run(module)


def _profile(module: Module, revision: int) -> analyses.Profile:
    """A made-up profile: node k (by rank) takes (k + 1) ms."""
    nodes = [analyses.NodeProfile(n.id, 0.001 * (k + 1), 0, 0, 0, 0) for k, n in enumerate(module.graph.nodes)]
    return analyses.Profile(revision=revision, device="cpu", method="perf_counter", reps=3, warmup=1,
                            torch_version="2.14.1", malloc="default", nodes=nodes, measured_peak_bytes=0,
                            peak_node=-1, iteration_s=0.1)


def test_golden_small_module():
    m = small_module()
    _run(m)
    text = print_module(m)
    if os.environ.get("ACIR_UPDATE_GOLDEN") == "1":
        GOLDEN.write_bytes(text.encode("utf-8"))
    assert text == GOLDEN.read_bytes().decode("utf-8"), \
        "printer output changed; rerun with ACIR_UPDATE_GOLDEN=1 and review the diff"


def test_golden_parses_back_with_the_analysis():
    text = GOLDEN.read_bytes().decode("utf-8")
    m = parse_module(text, GOLDEN.name)
    want = small_module()
    _run(want)
    assert dumps(m) == dumps(want)
    assert print_module(loads(dumps(m))) == text


def test_what_the_pass_writes():
    m = small_module()
    (run,) = _run(m)
    live = m.analyses[LIVENESS]
    assert isinstance(live, analyses.Liveness)
    t = simulate(m.graph)
    assert live.revision == m.header.revision == 2
    assert live.timeline == t.live
    assert live.simulated_peak_bytes == t.peak_bytes == 756
    assert live.peak_node == m.graph.nodes[t.peak_rank].id == 23  # Adam's sqrt + eps, both alive
    assert live.persistent_bytes == 128 + 16 + 16 + 128 + 128 + 64
    assert sum(live.peak_by_role.values()) == live.simulated_peak_bytes
    assert live.peak_by_role[Role.OTHER] == 2 * 128
    assert live.storages == storage_lives(m.graph)
    assert not live.used_profile
    acts = [s for s in live.storages if s.activation]
    assert run.result.modified is False
    assert run.result.stats == {"simulated_peak_bytes": 756, "peak_node": 23, "activations": len(acts),
                                "activation_bytes": sum(m.graph.storage(s.storage).nbytes for s in acts)}
    assert m.header.pipeline[-1] == "liveness" and m.header.revision == 2


def test_uses_a_fresh_profile_for_inactive_times():
    m = small_module()
    m.analyses[PROFILE] = _profile(m, m.header.revision)
    _run(m)
    live = m.analyses[LIVENESS]
    assert live.used_profile
    # bn_out (s7): made at rank 2, last read in the forward at rank 3, first in the backward at 13
    # (the recomputed relu): idle over ranks 4..12, which take 5..13 ms
    s7 = next(s for s in live.storages if s.storage == 7)
    assert (s7.defined, s7.last_fw_use, s7.first_bw_use, s7.activation) == (2, 3, 13, True)
    assert s7.inactive_s == pytest.approx(sum(0.001 * (k + 1) for k in range(4, 13)))
    assert all(s.inactive_s == 0.0 for s in live.storages if not s.activation)


def test_ignores_a_stale_profile():
    m = small_module()
    m.analyses[PROFILE] = _profile(m, m.header.revision - 1)
    _run(m)
    live = m.analyses[LIVENESS]
    assert not live.used_profile
    assert all(s.inactive_s == 0.0 for s in live.storages)


def test_survives_the_binary_artifact():
    m = small_module()
    m.analyses[PROFILE] = _profile(m, m.header.revision)
    _run(m)
    back = loads(dumps(m))
    assert back.analyses == m.analyses


# ---------------------------------------------------------------------------
# the manager refuses a pass that needs liveness once the graph has changed


@dataclass(frozen=True)
class NeedsLiveness(Pass):
    """Require liveness and do nothing."""

    name = "needs-liveness"
    requires = (LIVENESS,)

    def run(self, module: Module) -> PassResult:
        return PassResult(False)


@dataclass(frozen=True)
class Touch(Pass):
    """Change the graph harmlessly (node 0's module path)."""

    name = "touch"

    def run(self, module: Module) -> PassResult:
        module.graph.nodes[0].module = "touched"
        return PassResult(True)


@pytest.fixture
def test_passes(monkeypatch: pytest.MonkeyPatch):
    for cls in (NeedsLiveness, Touch):
        monkeypatch.setitem(registry.PASSES, cls.name, f"{__name__}:{cls.__name__}")


def test_fresh_liveness_satisfies_a_pass_that_requires_it(test_passes):
    m = small_module()
    _run(m, "liveness,needs-liveness")
    assert m.header.pipeline[-2:] == ["liveness", "needs-liveness"]


def test_stale_liveness_is_refused(test_passes):
    m = small_module()
    with pytest.raises(PreconditionError, match=r"needs-liveness requires liveness, but it is stale \(computed at "
                                                r"revision 2, the graph is at revision 3\); re-run liveness"):
        _run(m, "liveness,touch,needs-liveness")
    m = small_module()
    _run(m, "liveness,touch,liveness,needs-liveness")
    assert m.analyses[LIVENESS].revision == 3


def test_missing_liveness_names_the_fix(test_passes):
    with pytest.raises(PreconditionError, match=r"add it before needs-liveness, e\.g\. -p 'liveness,needs-liveness'"):
        _run(small_module(), "needs-liveness")


def test_liveness_of_15k_nodes():  # how fast: a benchmark's business, not a test's (no timed tests)
    m = big_module()
    p = build_pipeline("liveness")[0]
    p.run(m)
    assert len(m.analyses[LIVENESS].timeline) == 15003
