"""The plan block: binary and text round trips, node-line notes, and refusal of bad decisions.

The plan is made by hand on ``small_module`` over its real activation storages: y (s6),
bn_out, save_mean, save_rstd (s7, s8, s9), logp (s13) and total_weight (s15).
"""

from __future__ import annotations

import pytest
from ir_fixtures import small_module

from acir.errors import ParseError, SerdeError
from acir.ir._proto import acir_pb2 as pb
from acir.ir.analyses import PLAN, Analyses, Decision, Plan, TensorPlan
from acir.ir.graph import Module
from acir.ir.serde import analysis_from_text, analysis_to_text, dumps, loads
from acir.ir.text import parse_module, print_module

K, R = Decision.KEEP, Decision.RECOMPUTE


def hand_plan(revision: int = 2, gap: float = -1.0) -> Plan:
    tensors = [
        TensorPlan(6, R, srcs=[5, 0], recompute_s=0.002, recompute_count=1),   # y = einsum(x, fc.weight.t())
        TensorPlan(7, K),                                                       # bn_out: free, kept
        TensorPlan(8, K, reason="updates a buffer"),                            # save_mean
        TensorPlan(9, K, reason="updates a buffer"),                            # save_rstd
        TensorPlan(13, R, srcs=[7], recompute_s=1 / 3, recompute_count=2),     # logp, from bn_out
        TensorPlan(15, K, reason="random op"),                                  # total_weight
    ]
    return Plan(revision=revision, planner="mutwo{budget=60%}", budget_bytes=1234, predicted_peak_bytes=1200,
                predicted_recompute_s=0.002 + 2 / 3, solve_s=0.0125, no_ac_peak_bytes=1500, floor_bytes=1100,
                tensors=tensors, optimality_gap=gap)


def planned(**kw) -> Module:
    m = small_module()
    m.analyses[PLAN] = hand_plan(**kw)
    return m


def test_binary_round_trip():
    data = dumps(planned())
    back = loads(data)
    assert back.analyses[PLAN] == hand_plan()
    assert back.analyses[PLAN].recomputed() == [t for t in hand_plan().tensors if t.decision is R]
    assert dumps(back) == data


@pytest.mark.parametrize("gap", [-1.0, 0.0, 0.0125])
def test_block_text_round_trip(gap):
    plan = hand_plan(gap=gap)
    line = analysis_to_text(PLAN, plan)
    assert "decision: RECOMPUTE" in line and 'reason: "updates a buffer"' in line
    assert analysis_from_text(PLAN, line, "test") == plan


def test_binary_text_binary_identical():
    data = dumps(planned())
    text = print_module(loads(data))
    assert dumps(parse_module(text)) == data


def test_text_binary_text_identical():
    text = print_module(planned())
    back = parse_module(text)
    assert back.analyses == Analyses({PLAN: hand_plan()})
    assert print_module(loads(dumps(back))) == text


def test_plan_line_comes_last():
    from acir.pipeline.registry import build_pipeline

    m = planned()
    build_pipeline("liveness")[0].run(m)
    lines = print_module(m).splitlines()
    assert [line.split(" ", 2)[1] for line in lines if line.startswith("analysis ")] == ["liveness", "plan"]
    assert lines[-1].startswith('analysis plan revision: 2 planner: "mutwo{budget=60%}" budget_bytes: 1234')
    assert dumps(parse_module("\n".join(lines))) == dumps(m)


def test_node_notes():
    text = print_module(planned())
    line = {ln.split(" ", 1)[0]: ln for ln in text.splitlines()}
    assert line["n1"].endswith("ACTIVATION FORWARD @encoder.fc  # +32 B, recompute")          # y
    assert line["n2"].endswith("FORWARD @encoder.bn  # +64 B, keep (updates a buffer)")      # once for two
    assert line["n7"].endswith("FORWARD @head  # +24 B, recompute")                          # logp
    assert line["n8"].endswith("FORWARD  # +8 B, keep (random op)")
    assert line["n3"].endswith("FORWARD @encoder.act  # +32 B")  # not an activation: no note
    assert line["n0"].endswith("  # +0 B")  # a view creates nothing
    # a stale plan is still shown; without any analysis there are no comments
    assert "recompute" in print_module(planned(revision=1)).split("n1 ", 1)[1].split("\n", 1)[0]
    assert "  #" not in print_module(small_module())


def _with_decision(raw: int) -> bytes:
    msg = pb.Module()
    msg.ParseFromString(dumps(planned()))
    msg.analyses.plan.tensors[4].decision = raw
    return msg.SerializeToString(deterministic=True)


@pytest.mark.parametrize("raw", [0, 7])
def test_bad_decision_is_a_serde_error(raw):
    with pytest.raises(SerdeError, match=rf"plan tensor s13: unknown Decision {raw}"):
        loads(_with_decision(raw), "x.acir")


def test_bad_decision_in_text_names_the_line():
    text = print_module(planned())
    bad = text.replace("decision: RECOMPUTE", "decision: 7", 1)
    assert bad != text
    lineno = next(i for i, ln in enumerate(bad.split("\n"), 1) if ln.startswith("analysis plan"))
    with pytest.raises(ParseError, match=rf"^m.txt:{lineno}: .*unknown Decision 7"):
        parse_module(bad, "m.txt")
    with pytest.raises(ParseError, match=rf"^m.txt:{lineno}: .*bad plan block"):
        parse_module(text.replace("decision: RECOMPUTE", "decision: MAYBE", 1), "m.txt")
