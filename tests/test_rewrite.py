"""The rewrite: recomputation in the backward, bit-identical, with the memory it promised.

Every test runs the rewritten graph for real: one step against eager PyTorch from the same
start (loss, parameters, buffers, optimizer state compared bit for bit), and the peak of
live storages measured against the simulator's after the rewrite and the plan's prediction.
Each hazard has a test that fails when its handling is taken out.
"""

from __future__ import annotations

import copy
import os

import pytest
from conftest import ROOT, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acir.ir import analyses
from acir.ir.analyses import LIVENESS, PLAN, Decision
from acir.ir.graph import Region
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline

HAZARDS = os.path.join(ROOT, "tests", "models", "hazards.py")
PROFILE_PASS = "profile{reps=1,warmup=0}"


def run(module, pipeline: str):
    m = copy.deepcopy(module)
    PassManager(build_pipeline(pipeline)).run(m)
    return m


def check(module, reference=None):
    from acir.frontend.rebuild import rebuild
    from acir.runtime.check import check_against_eager
    from acir.runtime.lower import BoundStep

    prov = module.header.provenance
    return check_against_eager(lambda: rebuild(prov), lambda m, o, b: BoundStep(module, m, o)(b), 1234,
                               reference)


def measured_peak(module) -> int:
    import torch

    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    model, opt, _, batch = rebuild(module.header.provenance)
    step = BoundStep(module, model, opt)
    torch.manual_seed(0)
    return measure_peak(lambda: step(batch), step.inputs(batch))


def with_plan(module, recompute: set[int], retain: set[int] = frozenset()):
    """``module`` (profiled, with liveness) with a plan that recomputes exactly the storages ``recompute``
    (retaining those in ``retain``)."""
    m = run(module, "keep-all")
    for t in m.analyses[PLAN].tensors:
        t.decision = Decision.RECOMPUTE if t.storage in recompute else Decision.KEEP
        t.retained = t.storage in recompute and t.storage in retain
    return m


@pytest.fixture(scope="module")
def hazard():
    from acir.api import CaptureOptions, capture

    cache: dict = {}

    def get(factory: str):
        if factory not in cache:
            cache[factory] = capture(CaptureOptions(f"{HAZARDS}:{factory}", 4))
        return cache[factory]

    return get


def _assert_sound(before, after):
    """Bit-identical to eager; measured == simulated after the rewrite <= the plan's prediction."""
    report = check(after)
    assert report.ok, report.summary()
    plan = after.analyses[PLAN]
    live = after.analyses[LIVENESS]
    assert live.revision == after.header.revision == before.header.revision + 1
    assert measured_peak(after) == live.simulated_peak_bytes
    assert live.simulated_peak_bytes <= plan.predicted_peak_bytes
    copies = [n for n in after.graph.nodes if n.recompute_of is not None]
    assert len(copies) >= len(plan.recomputed()) and all(n.region is Region.BACKWARD for n in copies)
    ids = {n.id: n for n in before.graph.nodes}
    assert all(ids[n.recompute_of].region is Region.FORWARD and n.module == ids[n.recompute_of].module
               for n in copies)
    # the optimizer region is untouched
    opt_before = [(n.id, n.op, n.args, n.kwargs) for n in before.graph.nodes if n.region is Region.OPTIMIZER]
    opt_after = [(n.id, n.op, n.args, n.kwargs) for n in after.graph.nodes if n.region is Region.OPTIMIZER]
    assert opt_before == opt_after


# -- whole models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "resnet18", "bert-tiny", "gpt2-tiny", "user"])
def test_recompute_all_is_bit_identical_and_measured_as_simulated(captured, name):
    before = run(captured(name), f"{PROFILE_PASS},liveness,recompute-all")
    after = run(before, "rewrite")
    assert after.analyses[PLAN].recomputed()
    _assert_sound(before, after)
    assert after.analyses[LIVENESS].simulated_peak_bytes <= before.analyses[LIVENESS].simulated_peak_bytes


@pytest.mark.parametrize("name", ["resnet18", "user"])
def test_mutwo_plan_runs_within_its_budget(captured, name):
    """A budget halfway between the lowest reachable peak and the no-AC peak."""
    probe = run(captured(name), f"{PROFILE_PASS},liveness,keep-all")
    plan = probe.analyses[PLAN]
    budget = (plan.floor_bytes + plan.no_ac_peak_bytes) // 2
    assert plan.floor_bytes < budget < plan.no_ac_peak_bytes
    before = run(probe, f"mutwo{{budget={budget}}}")
    after = run(before, "rewrite")
    _assert_sound(before, after)
    assert measured_peak(after) <= after.analyses[PLAN].budget_bytes


def test_nothing_to_recompute_changes_only_the_loss_head(captured):
    from acir.analysis.loss_head import FUSED_BACKWARD

    before = run(captured("mlp"), f"{PROFILE_PASS},liveness,keep-all")
    after = run(before, "rewrite")
    ops = [n.op for n in after.graph.nodes]
    assert ops.count(FUSED_BACKWARD) == 1 and ops.count("aten._log_softmax.out") == 1
    assert "aten.nll_loss_backward.default" not in ops
    assert len(ops) == len(before.graph.nodes) - 1 and not any(n.recompute_of is not None for n in after.graph.nodes)
    assert after.header.revision == before.header.revision + 1
    assert after.analyses[LIVENESS].simulated_peak_bytes <= before.analyses[LIVENESS].simulated_peak_bytes
    assert check(after).ok
    # with the loss head already fused, a second rewrite has nothing left to do
    again = run(run(after, f"{PROFILE_PASS},keep-all"), "rewrite")
    assert [n.id for n in again.graph.nodes] == [n.id for n in after.graph.nodes]


# -- random plans --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiled_user(captured):
    return run(captured("user"), f"{PROFILE_PASS},liveness")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_allowed_plan_is_bit_identical(profiled_user, data):
    """A random subset of the recomputable activations: the rewrite is exact, and never above the evaluator."""
    from acir.analysis.candidates import build
    from acir.analysis.problem import evaluate

    cands = build(profiled_user)
    allowed = [i for i in range(cands.problem.n_candidates) if cands.problem.allowed[i]]
    chosen = data.draw(st.lists(st.sampled_from(allowed), min_size=1, unique=True))
    retained = data.draw(st.sets(st.sampled_from(chosen)))
    m = with_plan(profiled_user, {cands.storages[i] for i in chosen}, {cands.storages[i] for i in retained})
    after = run(m, "rewrite")
    assert check(after).ok
    sim = after.analyses[LIVENESS].simulated_peak_bytes
    assert measured_peak(after) == sim
    assert sim <= evaluate(cands.problem, chosen, retained).peak
    copies = sum(n.recompute_of is not None for n in after.graph.nodes)
    assert copies <= sum(len(cands.chains[i]) * n for i, n in enumerate(evaluate(cands.problem, chosen,
                                                                                  retained).counts))


# -- hazards: each test fails when its handling is removed ---------------------------------------


def test_batch_norm_replay_leaves_running_statistics_alone(hazard, monkeypatch):
    before = run(hazard("batch_norm_chain"), f"{PROFILE_PASS},liveness,recompute-all")
    after = run(before, "rewrite")
    replays = [n for n in after.graph.nodes if n.recompute_of is not None and "batch_norm" in n.op]
    assert replays and all(n.args[3] is None and n.args[4] is None for n in replays)
    _assert_sound(before, after)

    from acir.passes import rewrite as rw

    monkeypatch.setattr(rw, "_replay_call", lambda node, rng_state=None: (node.op, list(node.args), dict(node.kwargs)))
    report = check(run(before, "rewrite"))
    assert not report.ok and "running_mean" in report.summary()


def test_in_place_ops_are_replayed_on_the_copy(hazard):
    before = run(hazard("batch_norm_chain"), f"{PROFILE_PASS},liveness,recompute-all")
    after = run(before, "rewrite")
    g = after.graph
    relus = [n for n in g.nodes if n.recompute_of is not None and n.op == "aten.relu_.default"]
    assert relus
    originals = {g.values[v].storage for n in g.nodes if n.recompute_of is None and n.region is Region.FORWARD
                 for v in n.output_ids()}
    assert all(g.values[n.args[0].id].storage not in originals for n in relus)


def test_a_source_updated_in_place_later_is_not_replayed_from(hazard, monkeypatch):
    from acir.analysis import candidates as ac_candidates
    from acir.analysis.candidates import build

    before = run(hazard("stale_source"), f"{PROFILE_PASS},liveness")
    cands = build(before)
    stale = [r for r in cands.reasons if "updates in place" in r]
    assert stale, cands.reasons
    after = run(before, "recompute-all,rewrite")
    assert check(after).ok

    monkeypatch.setattr(ac_candidates, "_stale_read", lambda *a, **k: "")
    monkeypatch.setattr(ac_candidates, "_read_after_end", lambda *a, **k: "")  # it would refuse the same replay
    report = check(run(before, "recompute-all,rewrite"))
    assert not report.ok


def test_views_of_a_recomputed_tensor_move_into_the_copy(hazard, monkeypatch):
    from acir.errors import VerifyError
    from acir.passes import rewrite as rw

    before = run(hazard("views"), f"{PROFILE_PASS},liveness,recompute-all")
    assert rw.rewrite(copy.deepcopy(before)).rehomed > 0
    after = run(before, "rewrite")
    _assert_sound(before, after)

    # left in the original's storage, a backward view would keep it alive in the simulator
    # (or be refused by the verifier), while the real run frees it: they would disagree
    monkeypatch.setattr(rw, "_rehome_views", lambda g, node, home: 0)
    try:
        broken = run(before, "rewrite")
    except VerifyError:
        return
    assert measured_peak(broken) != broken.analyses[LIVENESS].simulated_peak_bytes


def _dropout_candidates(module):
    from acir.analysis.candidates import build

    cands = build(module)
    random = {r for r, n in enumerate(cands.graph.nodes) if "bernoulli" in n.op}
    return cands, [k for k, chain in enumerate(cands.chains) if set(chain) & random]


def test_dropout_is_replayed_with_its_saved_draws(captured):
    """A dropout mask recomputed in the backward draws what the forward drew (acir.ir.rng): the
    step is bit-identical, and the generator ends where it would have without the replay."""
    before = run(captured("user"), f"{PROFILE_PASS},liveness")
    cands, dropout = _dropout_candidates(before)
    assert dropout and all(cands.problem.allowed[k] for k in dropout)
    after = run(with_plan(before, {cands.storages[k] for k in dropout}), "rewrite")
    replays = [n for n in after.graph.nodes if n.op == "acir.bernoulli_replay_.default"]
    assert replays and all(n.region is Region.BACKWARD for n in replays)
    _assert_sound(before, after)
    assert _rng_state_after_step(after).equal(_rng_state_after_step(before))


def _rng_state_after_step(module):
    import torch

    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep

    model, opt, _, batch = rebuild(module.header.provenance)
    step = BoundStep(module, model, opt)
    torch.manual_seed(7)
    step(batch)
    return torch.get_rng_state()


def test_the_rng_states_are_kept_and_a_random_op_without_one_is_not_replayed(captured):
    from acir.ir.rng import KEEP_OP

    before = run(captured("user"), f"{PROFILE_PASS},liveness")
    cands, _ = _dropout_candidates(before)
    assert "a saved random-number state" in cands.reasons
    # without the node that keeps the states alive, the mask is a random op's again
    m = copy.deepcopy(captured("user"))
    m.graph.nodes = [n for n in m.graph.nodes if n.op != KEEP_OP]
    m = run(m, f"{PROFILE_PASS},liveness")
    cands, dropout = _dropout_candidates(m)
    assert dropout and all(cands.reasons[k].startswith("random op") for k in dropout)
    with pytest.raises(Exception, match="must be kept: random op"):
        run(with_plan(m, {cands.storages[dropout[0]]}), "rewrite")


def test_rewrite_needs_a_plan(captured):
    with pytest.raises(Exception, match="rewrite requires plan"):
        run(captured("mlp"), f"{PROFILE_PASS},liveness,rewrite")


def test_a_plan_for_another_graph_is_refused(captured):
    m = run(captured("mlp"), f"{PROFILE_PASS},liveness,recompute-all")
    m.analyses[PLAN].tensors.append(analyses.TensorPlan(storage=10**6, decision=Decision.RECOMPUTE))
    with pytest.raises(Exception, match="not an activation of this graph"):
        run(m, "rewrite")


# -- the command line -------------------------------------------------------------------------------


def test_acir_run_prints_measured_beside_predicted(tmp_path, captured):
    import json

    from acir.ir.artifact import write_path

    before = run(captured("user"), f"{PROFILE_PASS},liveness")
    write_path(before, str(tmp_path / "p.acir"))
    r = cli("acir-opt", str(tmp_path / "p.acir"), "-p", "recompute-all,rewrite", "-o", str(tmp_path / "r.acir"))
    assert r.returncode == 0, r.stderr.decode()
    r = cli("acir-run", str(tmp_path / "r.acir"), "--check", "--measure", "--iters", "1", "--warmup", "0",
            "--against", str(tmp_path / "p.acir"), "--json")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["check"] == "ok" and out["max_abs_diff"] == 0
    assert out["peak_bytes"] == out["simulated_peak_bytes"] <= out["predicted_peak_bytes"]
    assert out["peak_bytes"] < out["against_peak_bytes"]
    assert out["recompute_nodes"] > 0 and len(out["latencies_s"]) == len(out["against_latencies_s"]) == 1
    r = cli("acir-run", str(tmp_path / "r.acir"), "--measure", "--iters", "1", "--warmup", "0")
    assert b"plan predicted" in r.stderr and b"simulated" in r.stderr and b"within the budget" in r.stderr


def test_against_another_workload_is_an_error(tmp_path, captured):
    from acir.ir.artifact import write_path

    write_path(captured("mlp"), str(tmp_path / "a.acir"))
    write_path(captured("user"), str(tmp_path / "b.acir"))
    r = cli("acir-run", str(tmp_path / "a.acir"), "--check", "--against", str(tmp_path / "b.acir"))
    assert r.returncode == 1 and b"same workload" in r.stderr


# -- the Python API -------------------------------------------------------------------------------


@pytest.mark.parametrize("planner, budget", [("mutwo", "80%"), ("recompute-all", "100%")])
def test_compile_with_a_budget_matches_eager_over_steps(planner, budget):
    import importlib.util

    import torch

    import acir
    from acir.frontend.optim import eager_step

    spec = importlib.util.spec_from_file_location("hazards", HAZARDS)
    hazards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hazards)
    torch.manual_seed(0)
    model, batch, loss_fn = hazards.batch_norm_chain(4)
    ref = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    before = [p.clone() for p in model.parameters()]
    rng = torch.random.get_rng_state()

    step = acir.compile(model, opt, loss_fn, batch, budget=budget, planner=planner, profile_reps=1)
    assert torch.equal(torch.random.get_rng_state(), rng)           # profiling ran on copies ...
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # ... of the model
    assert step.plan.planner.startswith(planner) and step.plan.recomputed()
    assert any(n.recompute_of is not None for n in step.module.graph.nodes)
    assert step.module.analyses[LIVENESS].simulated_peak_bytes <= step.plan.predicted_peak_bytes
    for k in range(3):
        b = (torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))) if k else batch
        assert torch.equal(step(b), eager_step(ref, ref_opt, loss_fn, b))
    for p, q in zip(list(model.parameters()) + list(model.buffers()), list(ref.parameters()) + list(ref.buffers())):
        assert torch.equal(p, q)


def test_compile_with_an_unreachable_budget_says_the_smallest_peak():
    import torch
    from torch import nn

    import acir

    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(4, 8), torch.randint(0, 2, (4,)))
    with pytest.raises(acir.errors.InfeasibleBudget, match="smallest reachable peak is"):
        acir.compile(model, opt, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), batch, budget="1B",
                     profile_reps=1)
    with pytest.raises(acir.errors.ParseError, match="not a planner"):
        acir.compile(model, opt, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), batch, budget="1GiB",
                     planner="dce")
