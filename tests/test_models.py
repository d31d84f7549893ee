"""Models beyond the zoo: factories that only build for real, recurrent layers, no parameters.

A factory is user code: capture must take any that works eagerly. One that cannot run under
fake tensors (an initialiser calling ``.item()``) is built for real, turned into fake
tensors, and says so; an LSTM, whose CPU kernel makes its backward's workspace only with
grad mode on, captures, runs bit-identical to eager, and still does after a plan's rewrite.
"""

from __future__ import annotations

import copy
import os

import pytest
from conftest import ROOT

from acir.ir import analyses
from acir.ir.graph import InputKind
from acir.pipeline.manager import PassManager
from acir.pipeline.registry import build_pipeline

EAGER_INIT = os.path.join(ROOT, "tests", "models", "eager_init.py")
RECURRENT = os.path.join(ROOT, "tests", "models", "recurrent.py")


@pytest.fixture(scope="module")
def capture_of():
    from acir.api import CaptureOptions, capture

    cache: dict = {}

    def get(spec: str, batch_size: int = 2):
        if (spec, batch_size) not in cache:
            cache[spec, batch_size] = capture(CaptureOptions(spec, batch_size))
        return cache[spec, batch_size]

    return get


def check(module):
    from acir.frontend.rebuild import rebuild
    from acir.runtime.check import check_against_eager
    from acir.runtime.lower import BoundStep

    prov = module.header.provenance
    return check_against_eager(lambda: rebuild(prov), lambda m, o, b: BoundStep(module, m, o)(b), 1234)


def planned_and_rewritten(module):
    """``module`` profiled, planned with μ-TWO halfway between the floor and the no-AC peak, rewritten."""
    m = copy.deepcopy(module)
    PassManager(build_pipeline("profile{reps=1,warmup=0},liveness,keep-all")).run(m)
    plan = m.analyses[analyses.PLAN]
    budget = max(plan.floor_bytes, (plan.floor_bytes + plan.no_ac_peak_bytes) // 2)
    m.analyses.pop(analyses.PLAN)
    PassManager(build_pipeline(f"mutwo{{budget={budget}}},rewrite")).run(m)
    return m


# --- factories that must be built for real ------------------------------------------------


@pytest.mark.parametrize("factory, why", [("item_init", "DataDependentOutputException"),
                                          ("numpy_init", ".numpy()"),
                                          ("plain_attribute", "holds a tensor that is not a parameter or buffer"),
                                          ("copied_layers", "made under another fake-tensor mode")])
def test_a_factory_that_needs_data_is_built_for_real(capture_of, factory, why):
    from acir.frontend.rebuild import rebuild
    from acir.frontend.step import real_build
    from acir.frontend.zoo import storage_bytes
    from acir.ir.verify import verify

    m = capture_of(f"{EAGER_INIT}:{factory}")
    verify(m)
    model = rebuild(m.header.provenance)[0]
    nbytes, reason = real_build(m)
    assert nbytes == storage_bytes([*model.parameters(), *model.buffers()]) > 0
    assert why in reason
    assert check(m).ok


def test_the_real_build_keeps_ties_and_reads_other_tensors_as_constants(capture_of):
    m = capture_of(f"{EAGER_INIT}:tied_item_init")
    params = [i.name for i in m.graph.inputs if i.kind is InputKind.PARAMETER]
    assert "embed.weight" in params and "back.weight" not in params  # one input for the tied parameter
    assert [i.name for i in m.graph.inputs if i.kind is InputKind.MODULE_BUFFER][:2] == ["norm.running_mean",
                                                                                        "norm.running_var"]
    assert any(i.kind is InputKind.CONSTANT for i in m.graph.inputs)  # self.shift, a plain attribute
    assert check(m).ok


def test_to_fake_leaves_no_real_parameter_buffer_or_batch():
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from acir.frontend import zoo

    wl = zoo.build(f"{EAGER_INIT}:tied_item_init", 3)
    params_before = len(list(wl.model.parameters()))
    assert zoo.to_fake(wl, FakeTensorMode(allow_non_fake_inputs=True)) == 1288
    assert len(list(wl.model.parameters())) == params_before
    assert wl.model.back.weight is wl.model.embed.weight
    assert all(isinstance(t, FakeTensor) for t in [*wl.model.parameters(), *wl.model.buffers(), *wl.batch])
    assert all(isinstance(p, torch.nn.Parameter) or getattr(p, "_is_param", False) for p in wl.model.parameters())
    assert not isinstance(wl.model.shift, FakeTensor)


def test_acir_capture_says_it_built_for_real(tmp_path, capsys):
    from acir.tools.capture import main

    assert main([f"{EAGER_INIT}:item_init", "-o", str(tmp_path / "x.acir")]) == 0
    err = capsys.readouterr().err
    assert "could not be built under fake tensors (DataDependentOutputException" in err
    assert "so it was built for real: 1.3 KiB (1288 bytes) of parameters and buffers" in err


def test_zoo_models_are_still_built_under_fake_tensors(captured):
    from acir.frontend.step import real_build

    assert real_build(captured("mlp")) is None
    assert real_build(captured("user")) is None


def test_a_model_without_parameters_is_one_sentence(tmp_path, capsys):
    from acir.tools.capture import main

    assert main([f"{EAGER_INIT}:no_parameters", "-o", str(tmp_path / "x.acir")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("acir-capture: error: model ") and "has no parameters" in err
    assert "internal error" not in err and "\n" not in err


# --- recurrent layers -----------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["lstm", "gru"])
def test_recurrent_models_run_bit_identical_before_and_after_a_rewrite(capture_of, factory):
    m = capture_of(f"{RECURRENT}:{factory}")
    assert check(m).ok
    ac = planned_and_rewritten(m)
    assert ac.analyses[analyses.PLAN].recomputed()
    assert any(n.recompute_of is not None for n in ac.graph.nodes)
    assert check(ac).ok


def test_the_lstm_step_is_simulated_as_it_runs_and_holds_a_budget_at_its_floor(capture_of):
    """oneDNN's LSTM returns a workspace its meta kernel calls 0 bytes, and its backward returns the
    two bias gradients in two storages where the meta kernel returns one: capture sizes both as the
    CPU kernel does (acir.ir.ops), so the simulated peak is the measured one, and a plan at the
    floor holds its budget when run."""
    from acir.errors import InfeasibleBudget
    from acir.runtime.measure import measure_peak

    m = copy.deepcopy(capture_of(f"{RECURRENT}:lstm"))
    PassManager(build_pipeline("profile{reps=1,warmup=0},liveness")).run(m)
    prof, live = m.analyses[analyses.PROFILE], m.analyses[analyses.LIVENESS]
    assert prof.measured_peak_bytes == live.simulated_peak_bytes
    with pytest.raises(InfeasibleBudget) as e:
        PassManager(build_pipeline("mutwo{budget=1B}")).run(copy.deepcopy(m))
    floor = e.value.floor_bytes
    PassManager(build_pipeline(f"mutwo{{budget={floor}}},rewrite")).run(m)
    assert m.analyses[analyses.PLAN].recomputed()
    from acir.frontend.rebuild import rebuild
    from acir.runtime.lower import BoundStep

    model, opt, _, batch = rebuild(m.header.provenance)
    step = BoundStep(m, model, opt)
    assert measure_peak(lambda: step.run(batch), step.inputs(batch)) <= floor
    assert check(m).ok


def test_lstm_kernels_replayed_in_the_backward_run_bit_identical(capture_of):
    m = copy.deepcopy(capture_of(f"{RECURRENT}:lstm"))
    PassManager(build_pipeline("profile{reps=1,warmup=0},liveness,recompute-all,rewrite")).run(m)
    assert any(n.recompute_of is not None and n.op == "aten.mkldnn_rnn_layer.default" for n in m.graph.nodes)
    assert check(m).ok


@pytest.mark.parametrize("factory", ["lstm_projected", "cells"])
def test_other_recurrent_layers_run_bit_identical(capture_of, factory):
    assert check(capture_of(f"{RECURRENT}:{factory}")).ok


def test_the_lstm_kernel_runs_with_grad_mode_in_the_forward_only(capture_of):
    from acir.ir.graph import Region
    from acir.runtime.lower import runs_with_grad_mode

    m = capture_of(f"{RECURRENT}:lstm")
    lstm = [n for n in m.graph.nodes if n.op == "aten.mkldnn_rnn_layer.default"]
    assert lstm and all(n.region is Region.FORWARD and runs_with_grad_mode(n) for n in lstm)
    assert not any(runs_with_grad_mode(n) for n in m.graph.nodes if n.region is not Region.FORWARD)


def test_acir_run_check_and_the_lowered_source_on_an_lstm(capture_of, tmp_path, capsys):
    import runpy

    import torch

    from acir.frontend.rebuild import rebuild
    from acir.ir.artifact import write_path
    from acir.runtime.lower import BoundStep, python_source
    from acir.tools.run import main

    m = capture_of(f"{RECURRENT}:lstm")
    path = tmp_path / "lstm.acir"
    write_path(m, str(path), "binary")
    assert main([str(path), "--check"]) == 0
    assert "check: OK, bit-identical to eager" in capsys.readouterr().err
    src = tmp_path / "step.py"
    src.write_text(python_source(m))
    model, opt, _, batch = rebuild(m.header.provenance)
    with torch.no_grad():
        (loss,) = runpy.run_path(str(src))["step"](*BoundStep(m, model, opt).inputs(batch))
    assert loss.shape == ()


def test_an_lstm_language_model_trains_as_eagerly_over_steps():
    """An embedding feeding a two-layer LSTM, SGD with momentum: the second step is a second
    capture in the same process (the momentum buffers exist), which torch's fake-tensor dispatch
    cache answered with the LSTM backward's two bias gradients in two storages instead of the
    kernel's one (the verifier refused the step). Every step against the eager loop, bit for bit."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import acir

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(40, 24)
            self.rnn = nn.LSTM(24, 24, batch_first=True, num_layers=2, dropout=0.1)
            self.out = nn.Linear(24, 40)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0])

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten())

    torch.manual_seed(0)
    model = LM()
    ref = copy.deepcopy(model)
    make = lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)  # noqa: E731
    opt, ref_opt = make(model), make(ref)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 40, (4, 6), generator=g), torch.randint(0, 40, (4, 6), generator=g))
               for _ in range(3)]
    step = acir.compile(model, opt, loss_fn, batches[0], quiet=True)
    for k, b in enumerate(batches):
        torch.manual_seed(k)
        got = step(b)
        torch.manual_seed(k)
        ref_opt.zero_grad(set_to_none=True)
        want = loss_fn(ref, b)
        want.backward()
        ref_opt.step()
        assert torch.equal(got, want.detach()), k
        for (name, a), c in zip(model.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, c), f"step {k}: {name}"
    assert step.captures == 2
