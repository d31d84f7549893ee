"""acir-sweep: planners over budgets, CSV and plot, clear errors."""

from __future__ import annotations

import copy
import csv

import pytest

from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline


@pytest.fixture(scope="module")
def profiled(captured, tmp_path_factory):
    from acir.ir.serde import dumps

    m = copy.deepcopy(captured("resnet18"))
    PassManager(build_pipeline("profile{reps=1,warmup=0},liveness")).run(m)
    path = tmp_path_factory.mktemp("sweep") / "r18.p.acir"
    path.write_bytes(dumps(m))
    return path


def test_sweep_csv_and_plot(profiled, tmp_path, capsys):
    from acir.tools.sweep import main

    out, png = tmp_path / "s.csv", tmp_path / "p.png"
    assert main([str(profiled), "--points", "3", "--time-limit", "5", "-o", str(out), "--plot", str(png)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["planner"] for r in rows} == {"mutwo", "optimal", "keep-all", "recompute-all", "chen-sqrt"}
    assert sum(r["planner"] == "mutwo" for r in rows) == 3
    for r in rows:
        if r["planner"] in ("mutwo", "optimal") and r["feasible"] == "1":
            assert int(r["predicted_peak_bytes"]) <= int(r["budget_bytes"])
    # optimal is never worse than mutwo at the same budget
    by = {(r["planner"], r["budget_bytes"]): float(r["predicted_recompute_s"]) for r in rows}
    for (planner, b), t in by.items():
        if planner == "mutwo":
            assert by[("optimal", b)] <= t + 1e-12
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("argv, expect", [
    (["--planners", "nope"], "unknown planner nope"),
    (["--points", "0"], "--points must be at least 1"),
    (["--plot", "x.gif"], "use .png, .svg or .pdf"),
])
def test_sweep_errors(profiled, argv, expect, capsys):
    from acir.tools.sweep import main

    assert main([str(profiled), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("acir-sweep: error: ") and expect in err


def test_sweep_needs_profile_and_liveness(captured, tmp_path, capsys):
    from acir.ir.serde import dumps
    from acir.tools.sweep import main

    f = tmp_path / "bare.acir"
    f.write_bytes(dumps(captured("mlp")))
    assert main([str(f)]) == 1
    assert "planning requires profile; add it before the planner" in capsys.readouterr().err
