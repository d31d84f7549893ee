"""acir-stats: its numbers on a hand-annotated small_module, its files, its plot, its errors.

The analyses here are made by hand so that every figure can be checked by hand; the
simulator is only needed where the tool must compute liveness itself (missing or stale
block) and for the real capture at the end.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from ir_fixtures import GraphBuilder, big_module, small_module

from acir.ir.analyses import (
    LIVENESS,
    PLAN,
    PROFILE,
    Decision,
    Liveness,
    NodeProfile,
    Plan,
    Profile,
    StorageLife,
    TensorPlan,
)
from acir.ir.artifact import write_path
from acir.ir.graph import InputKind, Module, Role
from acir.tools.stats import main
from acir.viz import report
from acir.viz.plots import bucket_ranks, memory_plot

N = 26  # nodes of small_module: 9 forward, 9 backward, 8 optimizer
ACTS = {6: 1, 7: 2, 8: 2, 9: 2, 13: 7, 15: 8}  # activation storage -> defining rank (y, bn_out, mean, rstd, logp, tw)


def run_s(rank: int) -> float:
    return 0.001 * (rank + 1)


def hand_liveness(revision: int = 2) -> Liveness:
    timeline = [1000 + 10 * r for r in range(N)]
    timeline[13] = 2000  # the peak: relu_1, the recomputed relu
    lives = [StorageLife(s, d, d + 1, d + 1, 10, 14, True, 0.5) for s, d in ACTS.items()]
    lives.append(StorageLife(10, 3, 5))  # h: forward only
    by_role = {Role.PARAM: 144, Role.BUFFER: 16, Role.OPT_STATE: 256, Role.INPUT: 64, Role.ACTIVATION: 1000,
               Role.GRAD: 400, Role.OTHER: 120}
    return Liveness(revision, lives, timeline, 2000, 13, by_role, 480, True)


def hand_profile(revision: int = 2) -> Profile:
    nodes = [NodeProfile(r, run_s(r), 8 * r, 4 * r, 1100 + 10 * r, 1000 + 10 * r) for r in range(N)]
    return Profile(revision, "cpu", "dispatch", 5, 1, "2.14.1", "heap-kept", nodes, 2500, 14, 0.3)


def annotated(profiled: bool = True) -> Module:
    m = small_module()
    m.analyses[LIVENESS] = hand_liveness()
    if profiled:
        m.analyses[PROFILE] = hand_profile()
    return m


@pytest.fixture
def artifact(tmp_path):
    path = tmp_path / "small.acir"
    write_path(annotated(), str(path))
    return str(path)


def stats_json(capsys, *argv: str) -> tuple[dict, str]:
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_json_numbers_by_hand(capsys, artifact):
    d, err = stats_json(capsys, artifact)
    assert d["model"] == "tests/ir_fixtures.py:small" and d["batch_size"] == 2
    assert d["nodes"] == N and d["nodes_by_region"] == {"FORWARD": 9, "BACKWARD": 9, "OPTIMIZER": 8,
                                                           "COMMUNICATION": 0}
    assert d["recompute_nodes"] == 1
    # fc.weight 4x8 + bn.weight 4 floats; running mean; Adam's two 4x8 moments; a 2x8 batch
    assert d["persistent_bytes_by_role"] == {"PARAM": 144, "BUFFER": 16, "OPT_STATE": 256, "INPUT": 64}
    assert d["persistent_bytes"] == 480
    assert d["simulated_peak_bytes"] == 2000
    assert d["peak_node"] == {"id": 13, "rank": 13, "name": "relu_1", "op": "aten.relu.default",
                              "module": "encoder.act", "region": "BACKWARD"}
    assert d["bytes_by_role_at_peak"] == {"PARAM": 144, "BUFFER": 16, "INPUT": 64, "ACTIVATION": 1000,
                                          "GRAD": 400, "COMM_BUFFER": 0, "OPT_STATE": 256, "OTHER": 120}
    assert d["activations"] == {"count": 6, "bytes": 32 + 32 + 16 + 16 + 24 + 4}
    assert d["measured_peak_bytes"] == 2500 and d["measured_peak_node"]["name"] == "threshold_backward"
    assert d["simulator_error"] == pytest.approx(0.2)  # |2000 - 2500| / 2500
    t = d["time_by_region_s"]  # run_s(rank) = (rank + 1) ms
    assert t["FORWARD"] == pytest.approx(0.045) and t["BACKWARD"] == pytest.approx(0.126)
    assert t["OPTIMIZER"] == pytest.approx(0.180)
    assert d["profiled_time_s"] == pytest.approx(0.351) and d["iteration_s"] == 0.3
    assert d["profiled_over_iteration"] == pytest.approx(0.351 / 0.3)
    assert d["liveness_source"] == "artifact" and d["notes"] == []
    # the summary went to stderr, in human units
    assert "relu_1" in err and "20.0%" in err and "45.00 ms" in err and "0.0 MiB" in err


def test_summary_on_stdout_without_json(capsys, artifact):
    assert main([artifact]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("model ") and "peak (sim)" in out and "simulator error 20.0%" in out
    assert "activations   6 storages" in out


def test_unprofiled_keys_are_null(capsys, tmp_path):
    path = str(tmp_path / "a.acir")
    write_path(annotated(profiled=False), path)
    d, err = stats_json(capsys, path)
    for k in ("measured_peak_bytes", "simulator_error", "time_by_region_s", "iteration_s", "profiled_time_s",
              "profiled_over_iteration"):
        assert k in d and d[k] is None
    assert d["simulated_peak_bytes"] == 2000 and "not profiled" in err


def test_stale_profile_is_ignored_with_a_note():
    m = annotated()
    m.analyses[PROFILE].revision = 1
    d = report.report_json(m)
    assert d["measured_peak_bytes"] is None
    assert any("profile: ignored" in n and "stale" in n for n in d["notes"])


def test_csv_files(capsys, artifact, tmp_path):
    out_dir = tmp_path / "deep" / "stats"
    assert main([artifact, "-o", str(out_dir)]) == 0
    with open(out_dir / "nodes.csv", newline="") as f:
        nodes = list(csv.DictReader(f))
    assert list(nodes[0]) == ["rank", "id", "name", "op", "region", "module", "run_s", "alloc_bytes",
                              "freed_bytes", "live_bytes_after", "simulated_live_bytes"]
    assert len(nodes) == N
    assert nodes[13]["name"] == "relu_1" and nodes[13]["simulated_live_bytes"] == "2000"
    assert float(nodes[3]["run_s"]) == pytest.approx(0.004) and nodes[3]["live_bytes_after"] == "1030"
    with open(out_dir / "activations.csv", newline="") as f:
        acts = list(csv.DictReader(f))
    assert list(acts[0]) == ["storage", "bytes", "defined_rank", "node", "op", "module", "last_fw_use",
                             "first_bw_use", "last_bw_use", "inactive_s", "recompute_chain_s"]
    assert [int(a["storage"]) for a in acts] == [6, 7, 8, 9, 13, 15]
    logp = acts[4]
    assert logp["node"] == "_log_softmax" and logp["bytes"] == "24" and logp["module"] == "head"
    # _log_softmax <- clamp <- slice <- relu (h is not kept) <- bn_out (kept): ranks 7, 6, 5, 3
    assert float(logp["recompute_chain_s"]) == pytest.approx(run_s(7) + run_s(6) + run_s(5) + run_s(3))
    # einsum reads only graph inputs (x, and a view of fc.weight)
    assert float(acts[0]["recompute_chain_s"]) == pytest.approx(run_s(1))


def test_recompute_chain_on_a_hand_built_chain():
    """x -> a=relu(x) [kept] -> b=exp(a) -> c=neg(b) -> d=add(b, c) [kept]: d costs d + c + b, b once."""
    b = GraphBuilder()
    x = b.input("x", InputKind.BATCH, (4,))
    a, e, c, d = b.new((4,)), b.new((4,)), b.new((4,)), b.new((4,))
    b.node("aten.relu.default", [x], a)
    b.node("aten.exp.default", [a], e)
    b.node("aten.neg.default", [e], c)
    b.node("aten.add.Tensor", [e, c], d)
    g = b.graph
    times = {0: 1.0, 1: 10.0, 2: 100.0, 3: 1000.0}
    sid = lambda ref: g.values[ref.id].storage  # noqa: E731
    stops = {sid(x), sid(a), sid(d)}
    assert report.recompute_chain_s(g, 3, stops, times) == 1110.0
    assert report.recompute_chain_s(g, 1, stops, times) == 10.0     # exp reads the kept a
    assert report.recompute_chain_s(g, 0, stops, times) == 1.0      # relu reads the input
    assert report.recompute_chain_s(g, 3, {sid(x)}, times) == 1111.0  # nothing kept: back to the input


def fake_timeline(n: int, peak_rank: int) -> SimpleNamespace:
    """What acir.analysis.simulator.simulate returns, by hand: persistent 100 B, activations ramping up."""
    acts = [10 * r for r in range(n)]
    acts[peak_rank] = 10 * n
    by_role = {Role.PARAM: [100] * n, Role.ACTIVATION: acts, Role.GRAD: [0] * n}
    live = [100 + a for a in acts]
    return SimpleNamespace(live=live, after=live, by_role=by_role, peak_bytes=live[peak_rank], peak_rank=peak_rank,
                           persistent_bytes=100)


def facts_with(module: Module, timeline) -> report.Facts:
    f = report.gather(module)
    f._timeline = timeline
    return f


def test_plot_png_and_svg(tmp_path):
    f = facts_with(annotated(), fake_timeline(N, 13))
    png, svg = tmp_path / "m.png", tmp_path / "m.svg"
    memory_plot(f, str(png))
    memory_plot(f, str(svg), title="custom")
    assert png.read_bytes().startswith(b"\x89PNG")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and b"custom" in svg.read_bytes()


def test_plot_of_11k_nodes(tmp_path):  # how fast: a benchmark's business, not a test's (no timed tests)
    m = big_module(2200)  # 11002 nodes
    n = len(m.graph.nodes)
    f = facts_with(m, fake_timeline(n, 7777))
    memory_plot(f, str(tmp_path / "big.png"))
    assert (tmp_path / "big.png").read_bytes().startswith(b"\x89PNG")


def test_bucket_ranks_keep_the_peak():
    totals = [1] * 11000
    totals[7777] = 5
    ranks = bucket_ranks(totals, 4000)
    assert 7777 in ranks and len(ranks) <= 4000 and ranks == sorted(ranks)
    assert bucket_ranks([3, 1, 2], 4000) == [0, 1, 2]


@pytest.mark.parametrize("bad", ["m.gif", "m"])
def test_bad_plot_extension(capsys, artifact, tmp_path, bad):
    assert main([artifact, "--plot", str(tmp_path / bad)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("acir-stats: error:") and "use .png, .svg or .pdf" in err
    assert "Traceback" not in err and out == ""


def test_missing_file(capsys, tmp_path):
    assert main([str(tmp_path / "nope.acir")]) == 1
    assert capsys.readouterr().err.startswith("acir-stats: error: cannot read")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "acir-opt -p 'profile,liveness' | acir-stats --json" in out


# ---------------------------------------------------------------------------
# The plan section.


def hand_plan(revision: int = 2, gap: float = -1.0) -> Plan:
    K, R = Decision.KEEP, Decision.RECOMPUTE
    tensors = [TensorPlan(6, R, srcs=[5, 0], recompute_s=0.01, recompute_count=1),  # y, 32 B
               TensorPlan(7, K),
               TensorPlan(8, K, reason="updates a buffer"), TensorPlan(9, K, reason="updates a buffer"),
               TensorPlan(13, R, srcs=[7], recompute_s=0.01, recompute_count=2),    # logp, 24 B
               TensorPlan(15, K, reason="random op")]
    return Plan(revision, "mutwo{budget=60%}", 1800, 1200, 0.03, 0.25, 1500, 1100, tensors, gap)


def test_plan_json_by_hand(capsys, tmp_path):
    m = annotated()
    m.analyses[PLAN] = hand_plan()
    path = str(tmp_path / "planned.acir")
    write_path(m, path)
    d, err = stats_json(capsys, path)
    assert d["plan"] == {
        "planner": "mutwo{budget=60%}", "revision": 2, "stale": False, "rewritten": False,
        "budget_bytes": 1800, "predicted_peak_bytes": 1200, "predicted_recompute_s": 0.03, "solve_s": 0.25,
        "no_ac_peak_bytes": 1500, "floor_bytes": 1100, "tensors": 6, "recomputed": 2,
        "recomputed_bytes": 32 + 24,
        "kept_for_reason": {"count": 3, "by_reason": {"random op": 1, "updates a buffer": 2}},
        "optimality_gap": None}
    assert "plan          mutwo{budget=60%}; solved in 0.250 s\n" in err
    assert "within the budget; no-AC peak 0.0 MiB, 20.0% saved" in err  # (1500 - 1200) / 1500
    assert "added time  30.00 ms (10.0% of the 300.00 ms iteration)" in err  # 0.03 / 0.3
    assert "recomputed  2 of 6 activations, 0.0 MiB (56 bytes)" in err
    assert "kept        3 must stay: random op 1, updates a buffer 2" in err


def test_plan_stale_gap_and_unprofiled():
    m = annotated(profiled=False)
    m.analyses[PLAN] = hand_plan(revision=1, gap=0.015)
    d = report.report_json(m)
    assert d["plan"]["stale"] is True and d["plan"]["optimality_gap"] == 0.015
    text = report.summary(d)
    assert "(stale: made at revision 1, the graph is at revision 2)" in text and "optimality gap 1.50%" in text
    assert "added time  30.00 ms\n" in text  # no iteration time to compare with


def test_no_plan_is_null(capsys, artifact):
    d, err = stats_json(capsys, artifact)
    assert "plan" in d and d["plan"] is None
    assert "plan          - (no plan" in err


# ---------------------------------------------------------------------------
# With the real simulator.


def test_missing_liveness_is_computed(capsys, tmp_path):
    path = str(tmp_path / "bare.acir.txt")
    write_path(small_module(), path, emit="text")  # the text form reads too
    d, err = stats_json(capsys, path)
    assert d["liveness_source"] == "computed"
    assert "liveness: computed now (the artifact has no liveness block)" in err
    assert d["simulated_peak_bytes"] >= d["persistent_bytes"] == 480
    assert sum(d["bytes_by_role_at_peak"].values()) == d["simulated_peak_bytes"]


def test_stale_liveness_is_recomputed(capsys, tmp_path):
    m = annotated(profiled=False)
    m.analyses[LIVENESS].revision = 1
    path = str(tmp_path / "stale.acir")
    write_path(m, path)
    d, err = stats_json(capsys, path)
    assert d["liveness_source"] == "recomputed" and "liveness: recomputed now" in err and "stale" in err
    assert d["simulated_peak_bytes"] != 2000  # not the hand-made block
    assert any("stale" in n for n in d["notes"])


def test_real_capture(capsys, captured, tmp_path):
    m = captured("resnet18")
    path = str(tmp_path / "r18.acir")
    write_path(m, path)
    png = tmp_path / "r18.svg"
    d, _ = stats_json(capsys, path, "-o", str(tmp_path / "csv"), "--plot", str(png))
    assert d["model"] == "resnet18" and d["nodes"] == len(m.graph.nodes)
    assert d["nodes_by_region"]["FORWARD"] > 0 and d["nodes_by_region"]["BACKWARD"] > 0
    assert d["persistent_bytes_by_role"]["PARAM"] > 0 and d["activations"]["count"] > 0
    assert d["simulated_peak_bytes"] > d["persistent_bytes"]
    assert d["peak_node"] is not None
    ET.parse(png)
    with open(tmp_path / "csv" / "activations.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == d["activations"]["count"]
