"""Lowering and running: bit-identical to eager, measured, from the artifact alone."""

from __future__ import annotations

import json

import pytest
from conftest import cli


def _check(module):
    from acir.frontend.rebuild import rebuild
    from acir.runtime.check import check_against_eager
    from acir.runtime.lower import BoundStep

    prov = module.header.provenance
    return check_against_eager(lambda: rebuild(prov), lambda m, o, b: BoundStep(module, m, o)(b), 1234)


@pytest.mark.parametrize("name", ["mlp", "resnet18", "bert-tiny", "gpt2-tiny", "user"])
def test_bit_identical_to_eager(captured, name):
    report = _check(captured(name))
    assert report.ok, report.summary()
    assert report.compared > 3


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers(captured, optimizer):
    report = _check(captured("user", optimizer))
    assert report.ok, report.summary()


def test_check_detects_a_wrong_graph(captured):
    """Replace Adam's first-moment weight (a HYPERPARAM input) by a wrong constant: the check must notice and
    name what differs."""
    import copy

    from acir.ir.graph import Region

    m = copy.deepcopy(captured("mlp"))
    node = next(n for n in m.graph.nodes if n.region is Region.OPTIMIZER and n.op == "aten.lerp_.Scalar")
    node.args[2] = 0.05  # 1 - beta1 is 0.1
    report = _check(m)
    assert not report.ok
    assert "optimizer state" in report.summary()


def test_dropout_draws_depend_on_seed(captured):
    """The check is meaningful for dropout: a different RNG seed gives a different result."""
    import torch

    from acir.frontend.rebuild import rebuild
    from acir.runtime.check import check_against_eager
    from acir.runtime.lower import BoundStep

    m = captured("user")
    prov = m.header.provenance

    def acir_other_seed(model, opt, batch):
        torch.manual_seed(999)
        return BoundStep(m, model, opt)(batch)

    assert not check_against_eager(lambda: rebuild(prov), acir_other_seed, 1234).ok


def test_python_source_runs(captured, tmp_path):
    import runpy

    import torch

    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep, python_source

    m = captured("mlp")
    path = tmp_path / "step.py"
    path.write_text(python_source(m))
    ns = runpy.run_path(str(path))
    model, opt, loss_fn, batch = rebuild(m.header.provenance)
    with torch.no_grad():
        (loss,) = ns["step"](*BoundStep(m, model, opt).inputs(batch))  # the optimizer's floats included
    assert loss.shape == ()


def test_measure_counts_each_storage_once():
    import torch

    from acir.runtime.measure import measure_peak

    base = torch.zeros(1000)

    def step():
        v = base.view(10, 100)          # a view: free
        base.add_(1)                    # in place: free
        t = torch.ones(250)             # 1000 new bytes
        u = t * 2                       # 1000 more, both alive
        del t, u, v

    assert measure_peak(step, [base]) == 4000 + 2000


def test_acir_run_cli_check_measure_json(tmp_path, captured):
    from acir.ir.serde import dumps

    f = tmp_path / "mlp.acir"
    f.write_bytes(dumps(captured("mlp")))
    r = cli("acir-run", str(f), "--check", "--measure", "--json", "--iters", "2")
    assert r.returncode == 0, r.stderr.decode()
    d = json.loads(r.stdout)
    assert d["check"] == "ok" and d["max_abs_diff"] == 0
    assert d["peak_bytes"] > 0 and d["latency_s"] > 0


def test_pipe_capture_opt_run():
    import os
    import subprocess
    import sys

    bindir = os.path.dirname(sys.executable)
    r = subprocess.run(f"{bindir}/acir-capture mlp -b 2 | {bindir}/acir-opt | {bindir}/acir-run --check",
                       shell=True, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    assert b"bit-identical" in r.stderr


def test_compile_api_matches_eager_over_steps():
    import copy

    import torch
    from torch import nn

    import acir
    from acir.frontend.optim import eager_step

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4))
    ref = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)

    def loss_fn(m, b):
        return nn.functional.mse_loss(m(b[0]), b[1])

    batches = [(torch.randn(5, 8), torch.randn(5, 4)) for _ in range(3)]
    step = acir.compile(model, opt, loss_fn, batches[0])
    for b in batches:
        torch.manual_seed(7)
        got = step(b)
        torch.manual_seed(7)
        want = eager_step(ref, ref_opt, loss_fn, b)
        assert torch.equal(got, want)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(model.buffers(), ref.buffers()):
        assert torch.equal(p, q)
    with pytest.raises(acir.errors.RunError, match="dtypes and devices"):
        step((torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 4)))


# -- the malloc setting latencies are measured with ---------------------------------------------------------


def test_measure_keeps_the_heap_by_default_and_says_so(tmp_path, captured, capsys):
    """acir-run --measure times with freed memory kept in the heap unless --malloc default, and says which
    (--malloc default in a fresh process: a process that has kept its heap cannot go back)."""
    from acir.ir.serde import dumps
    from acir.tools.run import main

    f = tmp_path / "mlp.acir"
    f.write_bytes(dumps(captured("mlp")))
    assert main([str(f), "--measure", "--iters", "1", "--warmup", "0", "--against", str(f)]) == 0
    err = capsys.readouterr().err
    assert "(malloc: heap-retained)" in err and "\r" not in err  # and no progress bar: stderr is no terminal
    default = cli("acir-run", str(f), "--measure", "--json", "--iters", "1", "--warmup", "0", "--malloc", "default")
    assert default.returncode == 0, default.stderr.decode()
    assert json.loads(default.stdout)["malloc"] == "default"


def test_the_malloc_option_switches_glibc():
    """What the setting does, in a fresh process each (the choice is process-wide): a step of a few big
    tensors faults its pages in again at every iteration with glibc's defaults (they were unmapped), and
    after a few iterations not at all with the heap kept."""
    import os
    import subprocess
    import sys

    code = """if True:
        import ctypes, resource, sys
        from acir.runtime.measure import use_malloc
        print(use_malloc(sys.argv[1]))
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        def tensor(n):  # what torch's CPU allocator does: malloc, then write every page
            p = libc.malloc(n)
            ctypes.memset(p, 1, n)
            return p
        faults = []
        for _ in range(10):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            a, b = tensor(64 << 20), tensor(32 << 20)
            c = tensor(64 << 20)
            libc.free(a)
            d = tensor(80 << 20)
            for p in (b, c, d):
                libc.free(p)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        print(min(faults[5:]))
    """
    got = {}
    for setting in ("heap-retained", "default"):
        r = subprocess.run([sys.executable, "-c", code, setting], capture_output=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"})
        assert r.returncode == 0, r.stderr.decode()
        said, faults = r.stdout.decode().split()
        got[said] = int(faults)
    assert set(got) == {"heap-retained", "default"}
    assert got["default"] > 10_000 and got["heap-retained"] < 1_000, got  # 4 KiB pages: ~61k, or none


def test_malloc_default_after_the_heap_was_kept_is_refused(monkeypatch):
    from acir.errors import RunError
    from acir.runtime import measure

    monkeypatch.setattr(measure, "_retained_by_mallopt", True)
    monkeypatch.setattr(measure, "_chosen", None)
    assert measure.malloc_setting() == "heap-retained"
    with pytest.raises(RunError, match="already kept in the heap"):
        measure.use_malloc("default")
    with pytest.raises(RunError, match="unknown malloc setting"):
        measure.use_malloc("jemalloc")
