"""acir-viz: the graph as DOT (golden), SVG and PNG output, the memory and Pareto pictures, errors.

The graph tests run on ``small_module`` (26 nodes, one recompute copy) with a hand-made
profile and plan, so every box can be checked by eye in ``tests/golden/viz_small.dot``
(``ACIR_UPDATE_GOLDEN=1`` rewrites it; review the diff). Rendering tests need Graphviz's
``dot`` (CI installs it) and are skipped without it.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import xml.etree.ElementTree as ET

import pytest
from conftest import cli
from ir_fixtures import big_module, small_module

from acir.bench.sweep import read_sweep_csv
from acir.ir.analyses import (
    LIVENESS,
    PLAN,
    PROFILE,
    Decision,
    NodeProfile,
    Plan,
    Profile,
    TensorPlan,
)
from acir.ir.artifact import encode, write_path
from acir.ir.graph import Module, Region, ValueRef
from acir.tools.viz import main
from acir.viz.dot import DotOptions, to_dot
from acir.viz.memory import predicted_ac
from acir.viz.select import homes, select

GOLDEN = pathlib.Path(__file__).parent / "golden" / "viz_small.dot"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def with_liveness(m: Module) -> Module:
    from acir.passes.liveness import Liveness

    Liveness().run(m)
    return m


def hand_profile(m: Module) -> Profile:
    nodes = [NodeProfile(n.id, 0.001 * (r + 1), 0, 0, 0, 0) for r, n in enumerate(m.graph.nodes)]
    return Profile(m.header.revision, "cpu", "dispatch", 5, 1, "2.14.1", "", nodes, 0, 0, 0.3)


def hand_plan(revision: int = 2) -> Plan:
    """Recompute y (storage 6, made by einsum) and logp (13, _log_softmax); keep bn_out (7) and the
    nll_loss total weight (15, 'random op' for the test's sake)."""
    K, R = Decision.KEEP, Decision.RECOMPUTE
    tensors = [TensorPlan(6, R, recompute_s=0.002, recompute_count=1), TensorPlan(7, K),
               TensorPlan(13, R, srcs=[7], recompute_s=0.008, recompute_count=1),
               TensorPlan(15, K, reason="random op")]
    return Plan(revision, "mutwo{budget=60%}", 1800, 1200, 0.01, 0.25, 1500, 1100, tensors)


def planned() -> Module:
    m = small_module()
    m.analyses[PROFILE] = hand_profile(m)
    m.analyses[PLAN] = hand_plan()
    return m


def before_rewrite() -> Module:
    """small_module as it was before relu_1 (a recompute copy of relu) was inserted."""
    m = small_module()
    g = m.graph
    copy = next(n for n in g.nodes if n.recompute_of is not None)
    (again,) = copy.output_ids()
    (h,) = g.nodes[copy.recompute_of].output_ids()
    g.nodes.remove(copy)
    for n in g.nodes:
        n.args = [ValueRef(h) if a == ValueRef(again) else a for a in n.args]
    sid = g.values.pop(again).storage
    g.storages = [s for s in g.storages if s.id != sid]
    m.header.revision = 1
    return with_liveness(m)


@pytest.fixture
def artifact(tmp_path) -> str:
    path = str(tmp_path / "small.acir")
    write_path(planned(), path)
    return path


def viz(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def node_line(dot: str, key: str) -> str:
    (line,) = [x for x in dot.splitlines() if x.strip().startswith(f"{key} [")]
    return line


# ---------------------------------------------------------------------------
# The graph as DOT


def test_golden_dot(capsys, artifact, tmp_path):
    out = tmp_path / "g.dot"
    rc, _, err = viz(capsys, artifact, "-o", str(out))
    assert rc == 0 and f"wrote {out}" in err
    text = out.read_text()
    if os.environ.get("ACIR_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "DOT output changed; rerun with ACIR_UPDATE_GOLDEN=1 and review the diff"
    assert viz(capsys, artifact)[1] == text  # no -o: the same DOT on standard output


def test_boxes_say_op_shape_bytes_time():
    dot = to_dot(planned(), small_module().graph.nodes)
    conv = node_line(dot, "n1")  # einsum: f32[2,4] = 32 B, the second node: 2 ms
    assert 'label="einsum\\nf32[2,4]\\n+32 B\\n2.00 ms' in conv
    assert "+0 B" in node_line(dot, "n0")  # t: a view, no new storage
    assert 'fillcolor="#dbe8f7"' in conv and 'fillcolor="#fbe3d0"' in node_line(dot, "n14")  # forward, backward
    assert 'fillcolor="#e3f1dc"' in node_line(dot, "n22")  # optimizer
    assert re.search(r'n1 -> n2 \[label="32 B"\]', dot)  # edges carry bytes


def test_plan_marks_recompute_and_keep():
    dot = to_dot(planned(), small_module().graph.nodes)
    rec = node_line(dot, "n1")  # einsum makes storage 6: RECOMPUTE
    assert "plan: RECOMPUTE" in rec and 'color="#c44e52"' in rec and "dashed" in rec and 'penwidth="3"' in rec
    assert "plan: RECOMPUTE" in node_line(dot, "n7")  # _log_softmax, storage 13
    keep = node_line(dot, "n2")  # native_batch_norm makes storage 7: KEEP
    assert "plan: KEEP" in keep and 'color="#2f4b7c"' in keep and "dashed" not in keep
    assert "plan: KEEP (random op)" in node_line(dot, "n8")
    assert "plan:" not in node_line(dot, "n3")  # relu: not an activation the plan decides
    assert "plan: recompute</td>" in dot and "plan: keep</td>" in dot  # the legend


def test_recompute_copy_stands_out():
    m = small_module()
    dot = to_dot(m, m.graph.nodes)
    copy = node_line(dot, "n13")
    assert "RECOMPUTE COPY of relu" in copy and 'fillcolor="#ffd54f"' in copy and 'peripheries="2"' in copy
    assert re.search(r"n3 -> n13 \[style=dashed, [^\]]*label=\"recomputed as\"", dot)
    assert "recompute copy</td>" in dot
    assert "RECOMPUTE COPY" not in node_line(dot, "n3")


def test_v_layout_backward_runs_up():
    m = small_module()
    dot = to_dot(m, m.graph.nodes)
    assert 'n15 -> n14 [label="32 B", dir=back]' in dot  # threshold_backward -> bn backward, drawn reversed
    assert re.search(r"n2 -> n15 \[[^\]]*constraint=false", dot)  # forward -> backward does not rank
    fw = to_dot(m, select(m, Region.FORWARD))
    assert "dir=back" not in fw and "constraint=false" not in fw


def test_selection_region_module_around():
    m = small_module()
    assert {n.region for n in select(m, Region.BACKWARD)} == {Region.BACKWARD}
    enc = select(m, module_path="encoder")
    assert {n.module for n in enc} == {"encoder.fc", "encoder.bn", "encoder.act"}
    assert [n.name for n in select(m, Region.FORWARD, "encoder.fc")] == ["t", "einsum"]
    assert len(select(m, module_path="fc")) == 7  # the optimizer's updates of fc.weight
    both = select(m, [Region.FORWARD, Region.BACKWARD], "encoder")
    assert {n.region for n in both} == {Region.FORWARD, Region.BACKWARD} and len(both) == 9
    # relu (n3) reads bn (n2) and is read by slice (n5); one hop more: einsum, clamp, the copy, bn backward ...
    assert [n.name for n in select(m, around="relu", depth=1)] == ["native_batch_norm", "relu", "slice"]
    assert [n.name for n in select(m, around="n3", depth=0)] == ["relu"]
    assert [n.name for n in select(m, Region.FORWARD, around="3", depth=1)] == ["native_batch_norm", "relu", "slice"]


def test_homes():
    m = small_module()
    h = homes(m.graph)
    assert h[0] == "encoder.fc" and h[16] == "encoder.fc"  # their own paths
    assert h[4] == "" and h[8] == ""  # arange and nll_loss_forward create storage: they stay at the top
    assert [h[k] for k in range(18, 25)] == ["fc"] * 7 and h[25] == "bn"  # the parameter each update works on
    m.graph.nodes[5].module = ""  # slice: a view outside any module goes with relu, which made its input
    assert homes(m.graph)[5] == "encoder.act"


def test_collapse_depth_folds_modules_with_totals():
    m = planned()
    dot = to_dot(m, m.graph.nodes, DotOptions(collapse_depth=1))
    assert not re.search(r"^\s*n\d+ \[", dot, re.M)  # every node is in a folded box
    fw = [x for x in dot.splitlines() if 'label="encoder\\nforward, 4 nodes' in x]
    assert len(fw) == 1 and "+128 B" in fw[0] and "10.00 ms" in fw[0]  # einsum 32, bn 64 (3 outputs), relu 32
    assert "plan: 1 recompute, 1 keep" in fw[0]
    (copies,) = [x for x in dot.splitlines() if 'label="encoder\\nbackward recompute, 1 node' in x]
    assert "1 RECOMPUTE COPY" in copies and 'fillcolor="#ffd54f"' in copies  # the copies are a box of their own
    (bw,) = [x for x in dot.splitlines() if 'label="encoder\\nbackward, 4 nodes' in x]
    assert "RECOMPUTE" not in bw
    # optimizer ops go with the parameter they update (the fixture names it fc.weight, bn.weight)
    assert 'label="fc\\noptimizer, 7 nodes\\n+256 B' in dot and 'label="bn\\noptimizer, 1 node\\n' in dot


def test_no_clusters_and_inputs(capsys, artifact):
    rc, out, _ = viz(capsys, artifact, "--no-clusters", "--inputs", "--region", "forward")
    assert rc == 0 and "subgraph cluster" not in out
    assert re.search(r'v0 \[label="fc.weight\\nf32\[4,8\]"', out) and "v0 -> n0" in out


def test_dot_of_11k_nodes():  # how fast: a benchmark's business, not a test's (no timed tests)
    m = big_module(2200)  # 11002 nodes, like resnet152's whole step
    text = to_dot(m, select(m))
    folded = to_dot(m, select(m), DotOptions(collapse_depth=2))
    assert text.count(" [label=") > 11000 and folded.count("box3d") > 2000


@needs_dot
def test_svg_parses_and_png_pdf(capsys, artifact, tmp_path):
    svg = tmp_path / "g.svg"
    assert viz(capsys, artifact, "-o", str(svg), "--module", "encoder")[0] == 0
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and "native_batch_norm" in svg.read_text()
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        out = tmp_path / f"g.{ext}"
        assert viz(capsys, artifact, "-o", str(out), "--collapse-depth", "1")[0] == 0
        assert out.read_bytes().startswith(magic)


@needs_dot
def test_pipeline_from_stdin(captured, tmp_path):
    step = cli("acir-opt", "-p", "liveness", stdin=encode(captured("mlp")))
    assert step.returncode == 0, step.stderr.decode()
    svg = tmp_path / "g.svg"
    r = cli("acir-viz", "-o", str(svg), stdin=step.stdout)
    assert r.returncode == 0, r.stderr.decode()
    ET.parse(svg)
    r = cli("acir-viz", "--memory", "-o", str(tmp_path / "m.png"), stdin=step.stdout)
    assert r.returncode == 0 and (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")


def test_missing_dot_says_how_to_install(capsys, artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot there
    rc, _, err = viz(capsys, artifact, "-o", str(tmp_path / "g.svg"))
    assert rc == 1 and err.startswith("acir-viz: error: rendering needs Graphviz's `dot`")
    assert "apt-get install -y graphviz" in err and "brew install graphviz" in err
    assert viz(capsys, artifact, "-o", str(tmp_path / "g.dot"))[0] == 0  # DOT needs no binary


# ---------------------------------------------------------------------------
# The memory picture


def test_predicted_ac_subtracts_idle_windows():
    m = with_liveness(planned())
    live = m.analyses[LIVENESS]
    base = list(live.timeline)
    ac = predicted_ac(m.graph, live, hand_plan(), base)
    lives = {s.storage: s for s in live.storages}
    saved = [b - a for a, b in zip(ac, base)]
    for sid, nbytes in ((6, 32), (13, 24)):
        life = lives[sid]
        lo, hi = max(life.last_fw_use, life.defined) + 1, life.first_bw_use
        assert lo < hi
        assert all(saved[r] >= nbytes for r in range(lo, hi))
    assert saved[0] == 0 and saved[-1] == 0 and max(saved) <= 56


def test_memory_png_and_plan_overlay(capsys, tmp_path):
    m = with_liveness(planned())
    m.graph.nodes[13].recompute_of = None  # not rewritten: the plan's prediction is drawn
    path = str(tmp_path / "p.acir")
    write_path(m, path)
    png, svg = tmp_path / "m.png", tmp_path / "m.svg"
    assert viz(capsys, path, "--memory", "-o", str(png))[0] == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert viz(capsys, path, "--memory", "-o", str(svg))[0] == 0
    text = svg.read_text()
    ET.parse(svg)
    assert "predicted with AC" in text and "budget" in text and "ACTIVATION" in text


def test_memory_after_rewrite(capsys, tmp_path):
    m = with_liveness(planned())  # has a recompute copy: the timeline is the AC one
    path, before = str(tmp_path / "rw.acir"), str(tmp_path / "before.acir")
    write_path(m, path)
    write_path(before_rewrite(), before)
    svg = tmp_path / "m.svg"
    rc, _, err = viz(capsys, path, "--memory", "--against", before, "-o", str(svg))
    assert rc == 0, err
    text = svg.read_text()
    assert "without AC" in text and "with AC (rewritten graph)" in text and "budget" in text
    rc, _, err = viz(capsys, path, "--memory", "-o", str(svg))
    assert rc == 0 and "no-AC peak (plan)" in svg.read_text()


# ---------------------------------------------------------------------------
# The Pareto picture

SWEEP = """planner,budget_bytes,feasible,predicted_peak_bytes,predicted_recompute_s,recomputed,solve_s
mutwo,1000000,1,990000,0.5,12,0.01
mutwo,2000000,1,1900000,0.1,3,0.01
optimal,1000000,1,980000,0.4,10,0.5
optimal,2000000,1,2000000,0.0,0,0.5
keep-all,0,1,2100000,0,0,0.0
recompute-all,0,1,900000,0.9,40,0.0
"""


def test_pareto_from_sweep_csv(capsys, tmp_path):
    csv_path = tmp_path / "sweep.csv"
    csv_path.write_text(SWEEP)
    assert len(read_sweep_csv(SWEEP.encode(), "sweep.csv")) == 6
    png = tmp_path / "p.png"
    rc, _, err = viz(capsys, str(csv_path), "--pareto", "-o", str(png), "--title", "tiny")
    assert rc == 0 and "6 sweep points" in err and png.read_bytes().startswith(b"\x89PNG")
    r = cli("acir-viz", "--pareto", "-o", str(tmp_path / "q.svg"), stdin=SWEEP.encode())
    assert r.returncode == 0, r.stderr.decode()
    ET.parse(tmp_path / "q.svg")
    rc, _, err = viz(capsys, str(csv_path), "-o", str(tmp_path / "g.dot"))  # forgot --pareto
    assert rc == 2 and "is a sweep CSV, not an artifact; draw it with --pareto" in err


# ---------------------------------------------------------------------------
# Errors: each bad option says what is wrong, exit 2


@pytest.mark.parametrize("argv, message", [
    (["--region", "sideways"], "argument --region: unknown region 'sideways'; choose from forward, backward"),
    (["--region", "forward,up"], "argument --region: unknown region 'up'"),
    (["--module", "encodr"], "no node has module path 'encodr' or one under it; did you mean encoder"),
    (["--region", "optimizer", "--module", "head"], "no optimizer node has module path 'head'"),
    (["--around", "relux"], "no node named or numbered 'relux' in the graph; did you mean relu"),
    (["--around", "n99"], "no node named or numbered 'n99'"),
    (["--region", "backward", "--around", "relu"], "node relu (n3, forward, module encoder.act) is not among"),
    (["--depth", "2"], "--depth needs --around NODE"),
    (["--around", "relu", "--depth", "-1"], "argument --depth: must be 0 or more"),
    (["--collapse-depth", "0"], "argument --collapse-depth: must be 1 or more"),
    (["-o", "g.gif"], "cannot write the graph to 'g.gif': unknown extension .gif; use .dot, .svg, .png, .pdf"),
    (["--memory", "-o", "m.dot"], "cannot write the memory plot to 'm.dot': unknown extension .dot"),
    (["--memory"], "--memory draws a picture: give -o OUT.png"),
    (["--memory", "-o", "m.png"], "--memory needs a liveness analysis, and FILE has none; add it"),
    (["--memory", "--region", "forward", "-o", "m.png"], "--region selects what of the graph to draw"),
    (["--against", "x.acir"], "--against OTHER goes with --memory"),
    (["--memory", "--pareto", "-o", "m.png"], "not allowed with argument"),
    (["--pareto", "-o", "p.png"], "--pareto reads the sweep CSV that acir-sweep writes"),
])
def test_bad_options_exit_2(capsys, artifact, tmp_path, argv, message):
    argv = [str(tmp_path / a) if a.startswith(("g.", "m.", "p.")) else a for a in argv]
    try:  # argparse's own errors exit through SystemExit; ours return 2
        rc = main([artifact, *argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2, err
    for name in ("g.gif", "m.dot"):
        message = message.replace(f"'{name}'", repr(str(tmp_path / name)))
    assert "acir-viz: error: " in err and message in err
    assert "Traceback" not in err and out == ""


def test_against_needs_a_rewritten_graph_and_a_matching_one(capsys, tmp_path):
    plain = with_liveness(small_module())
    plain.graph.nodes[13].recompute_of = None
    path = str(tmp_path / "plain.acir")
    write_path(plain, path)
    rc, _, err = viz(capsys, path, "--memory", "--against", path, "-o", str(tmp_path / "m.png"))
    assert rc == 2 and "--against is for a rewritten graph" in err
    rw, other = str(tmp_path / "rw.acir"), str(tmp_path / "other.acir")
    write_path(with_liveness(small_module()), rw)
    from ir_fixtures import conv_chain

    write_path(conv_chain(2, 4, "cpu", "chain"), other)
    rc, _, err = viz(capsys, rw, "--memory", "--against", other, "-o", str(tmp_path / "m.png"))
    assert rc == 2 and "of its 13 nodes are in this graph" in err


def test_stale_liveness_is_refused(capsys, tmp_path):
    m = with_liveness(small_module())
    m.analyses[LIVENESS].revision = 1
    path = str(tmp_path / "s.acir")
    write_path(m, path)
    rc, _, err = viz(capsys, path, "--memory", "-o", str(tmp_path / "m.png"))
    assert rc == 2 and "stale" in err and "acir-opt" in err


def test_missing_file_exits_1(capsys, tmp_path):
    rc, _, err = viz(capsys, str(tmp_path / "nope.acir"))
    assert rc == 1 and err.startswith("acir-viz: error: cannot read")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "acir-capture mlp | acir-opt -p liveness | acir-viz -o g.svg" in out
    assert "--collapse-depth" in out and "acir-sweep step.p.acir | acir-viz --pareto" in out


def test_a_real_step_folds_its_optimizer_without_region(capsys, captured, tmp_path):
    """resnet18's 1179 optimizer updates, drawn one by one beside the rest, take dot over ten
    minutes (or crash it): without --region they are folded per module, and it renders."""
    from acir.ir.artifact import write_path

    path = tmp_path / "r18.acir"
    write_path(captured("resnet18"), str(path))
    rc, dot, _ = viz(capsys, str(path))
    assert rc == 0 and "optimizer folded per module" in dot
    boxes = [line for line in dot.splitlines() if re.match(r"\s+n\d+ \[label=", line)]
    assert len(boxes) < 500
    rc, _, err = viz(capsys, str(path), "-o", str(tmp_path / "g.svg"))
    assert rc == 0, err
    import xml.dom.minidom

    xml.dom.minidom.parse(str(tmp_path / "g.svg"))
