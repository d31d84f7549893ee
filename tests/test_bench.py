"""acir-bench end to end on a tiny workload: every configuration gets a row, failures are
recorded and the run goes on, acir's rows are bit-identical to no AC, the files are written."""

from __future__ import annotations

import csv
import json
import os

from conftest import cli

# Four residual MLP blocks in an nn.Sequential (the checkpoint blocks), activations well above
# the parameters, dropout (PyTorch's budget re-runs it with fresh numbers; acir never does).
BLOCKS = '''
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.fc2(torch.tanh(self.fc1(x))))


def make(batch_size):
    model = nn.Sequential(nn.Linear(16, 32), *[Block(32) for _ in range(4)], nn.Linear(32, 4))
    n = 64 * batch_size
    batch = (torch.randn(n, 16), torch.randint(0, 4, (n,)))
    return model, batch, lambda m, b: F.cross_entropy(m(b[0]), b[1])
'''

CONFIGS = ["eager", "noac", "acir-mutwo-80%", "acir-mutwo-1%", "acir-mutwo@checkpoint", "acir-optimal-80%",
           "acir-optimal-1%", "checkpoint", "torch-budget-0.5"]


def test_bench_end_to_end(tmp_path):
    model = tmp_path / "blocks.py"
    model.write_text(BLOCKS)
    out = tmp_path / "bench"
    r = cli("acir-bench", f"{model}:make", "-b", "2,4", "--budgets", "80%,1%,=checkpoint",
            "--optimal-budgets", "80%,1%", "--torch-budgets", "0.5",
            "--iters", "1", "--warmup", "1", "--profile-reps", "1", "--time-limit", "5", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    err = r.stderr.decode()
    assert "acir-bench: [" in err and "building acir-mutwo-80%" in err  # progress on stderr
    for name in ("results.csv", "results.json", "memory.png", "latency.png", "scatter.png"):
        assert (out / name).stat().st_size > 0, name

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["results"]) == len(rows) == 2 * len(CONFIGS)
    for b in ("2", "4"):
        got = {row["config"]: row for row in rows if row["batch_size"] == b}
        assert list(got) == CONFIGS
        # an infeasible budget is a failed row with acir's reason, and the others still ran
        for cfg in ("acir-mutwo-1%", "acir-optimal-1%"):
            assert got[cfg]["status"] == "failed" and "smallest reachable peak" in got[cfg]["reason"]
        for cfg in ("eager", "noac", "acir-mutwo-80%", "acir-optimal-80%", "checkpoint", "torch-budget-0.5"):
            assert got[cfg]["status"] == "ok", (cfg, got[cfg]["reason"])
            assert int(got[cfg]["peak_bytes"]) > 0 and float(got[cfg]["latency_s"]) > 0
            assert float(got[cfg]["cpu_s"]) > 0
        assert got["noac"]["match"] == "ref"
        # acir (and plain eager) are bit-identical to no AC after the same steps; checkpoint too (no batch norm)
        for cfg in ("eager", "acir-mutwo-80%", "acir-optimal-80%", "checkpoint"):
            assert got[cfg]["match"] == "yes", (cfg, got[cfg]["mismatch"])
        assert got["torch-budget-0.5"]["match"] in ("yes", "no")
        # the planned steps fit their budget, and save memory against no AC
        for cfg in ("acir-mutwo-80%", "acir-optimal-80%"):
            assert int(got[cfg]["peak_bytes"]) <= int(got[cfg]["budget_bytes"])
            assert float(got[cfg]["peak_change"]) < 0
        assert got["checkpoint"]["blocks"].startswith("4 (Block x4)")
        # matched to checkpoint's measured peak: built after it, the same steps taken, within that peak
        m = got["acir-mutwo@checkpoint"]
        assert m["budget"] == "=checkpoint"
        if m["status"] == "ok":
            assert int(m["budget_bytes"]) == int(got["checkpoint"]["peak_bytes"])
            assert int(m["peak_bytes"]) <= int(got["checkpoint"]["peak_bytes"])
            assert m["match"] == "yes", m["mismatch"]
        else:
            assert "smallest reachable peak" in m["reason"], m["reason"]

    m = doc["machine"]
    assert m["malloc"] == "heap-retained" and "mmap_max=0" in m["glibc_tunables"]  # re-executed itself
    assert m["torch"] and m["cpu_count"] >= 1 and m["cpu"]
    assert doc["settings"]["batch_sizes"] == [2, 4]
    assert "noac" in r.stdout.decode()  # the table


def test_replot(tmp_path):
    results = {"machine": {}, "settings": {}, "results": [
        {"model": "mlp", "batch_size": b, "seq_len": 0, "image_size": 0, "config": c, "family": c, "budget": "",
         "status": "ok", "peak_bytes": p * 2**20, "latency_s": t, "peak_change": p / 10 - 1, "latency_change": t - 1,
         "match": "yes", "iters": 1, "device": "cpu", "malloc": "default"}
        for b in (2, 4) for c, p, t in (("noac", 10, 1.0), ("checkpoint", 6, 1.3))]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    r = cli("acir-bench", "--replot", str(path), "-o", str(tmp_path / "plots"))
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(os.listdir(tmp_path / "plots")) == ["latency.png", "memory.png", "scatter.png"]
    assert "checkpoint" in r.stdout.decode()


def test_bad_options(tmp_path):
    from acir.tools.bench import main

    for argv, msg in ((["mlp", "--configs", "nope"], "unknown configuration nope"),
                      (["mlp", "-b", "4,x"], "bad --batch-sizes"),
                      (["mlp", "--budgets", "sixty%"], "bad budget"),
                      (["mlp", "--torch-budgets", "1.5"], "bad --torch-budgets"),
                      (["mlp", "--budgets", "=nope"], "budget =nope: no such configuration"),
                      (["mlp", "--warmup", "0"], "--warmup must be at least 1"),
                      ([], "no model given")):
        r = cli("acir-bench", *argv, "-o", str(tmp_path / "x"))
        assert r.returncode == 1, (argv, r.stderr.decode())
        assert r.stderr.decode().startswith("acir-bench: error: ") and msg in r.stderr.decode(), r.stderr.decode()
    assert main(["mlp", "--device", "tpu", "-o", str(tmp_path / "x")]) == 1
    assert "examples:" in cli("acir-bench", "--help").stdout.decode()


def test_find_blocks():
    import torch
    import torchvision
    from torch import nn

    from acir.bench.configs import checkpoint_blocks, find_blocks
    from acir.errors import BenchError

    r18 = torchvision.models.resnet18(weights=None)
    blocks = find_blocks(r18)
    assert [p for p, _ in blocks] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert {type(m).__name__ for _, m in blocks} == {"BasicBlock"}
    assert [p for p, _ in find_blocks(r18, ("Bottleneck",))] == []
    assert len(find_blocks(r18, ("BasicBlock", "Conv2d"))) == 1 + 8  # the stem conv; the blocks hold the others

    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    try:
        checkpoint_blocks(mlp)
        raise AssertionError("an MLP has no repeated blocks")
    except BenchError as e:
        assert "--blocks" in str(e)

    # wrapped blocks compute the same loss and gradients, dropout included (checkpoint restores the RNG)
    ns: dict = {}
    exec(BLOCKS, ns)  # noqa: S102

    def loss_and_grads(wrap: bool):
        torch.manual_seed(0)
        model, batch, loss_fn = ns["make"](2)
        if wrap:
            assert [p for p, _ in checkpoint_blocks(model)] == ["1", "2", "3", "4"]
        torch.manual_seed(1)
        loss = loss_fn(model, batch)
        loss.backward()
        return loss, [p.grad for p in model.parameters()]

    (l1, g1), (l2, g2) = loss_and_grads(False), loss_and_grads(True)
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_floor_budget_and_resume(tmp_path):
    """``floor`` plans at the lowest peak μ-TWO reaches; ``--resume`` keeps the workloads an earlier
    run finished and measures the rest; with other settings it refuses rather than mixing figures."""
    model = tmp_path / "blocks.py"
    model.write_text(BLOCKS)
    out = tmp_path / "bench"
    common = (f"{model}:make", "--configs", "noac,acir-mutwo", "--budgets", "floor,80%", "--iters", "1",
              "--profile-reps", "1", "--no-plots", "-o", str(out))
    r = cli("acir-bench", *common, "-b", "2")
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    first = json.loads((out / "results.json").read_text())["results"]
    got = {row["config"]: row for row in first}
    floor, eighty = got["acir-mutwo-floor"], got["acir-mutwo-80%"]
    assert floor["status"] == "ok", floor["reason"]
    assert floor["predicted_peak_bytes"] <= floor["budget_bytes"] < eighty["budget_bytes"]
    assert floor["simulated_peak_bytes"] == floor["peak_bytes"] and floor["match"] == "yes"

    r = cli("acir-bench", *common, "-b", "2,4", "--resume")
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert "b2: kept from the earlier run (--resume)" in r.stderr.decode()
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [(x["batch_size"], x["config"]) for x in rows] == [
        (b, c) for b in (2, 4) for c in ("noac", "acir-mutwo-floor", "acir-mutwo-80%")]
    assert rows[:3] == first  # kept as measured, not measured again

    r = cli("acir-bench", *common, "-b", "2,4", "--resume", "--seed", "1")
    assert r.returncode == 1 and "measured with other settings: seed (was 0, now 1)" in r.stderr.decode()
