"""acir.compile against the user's own eager loop, bit for bit (``torch.equal``), over many steps.

The reference is PyTorch used exactly as a user uses it: the optimizer built by the test,
untouched by acir (never prepared, never made capturable), stepped eagerly by the same
loop. Both runs start from identical copies of the model and optimizer and re-seed the
generator identically before each step, so dropout draws the same masks. After every
step the loss, every parameter and buffer, and every optimizer state entry must be equal.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import acir
from acir.errors import CaptureError, RunError, UsageError

STEPS = 10


class Net(nn.Module):
    """A small net with what training loops meet: a norm layer, dropout, a bias-free layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 64)
        self.norm = nn.LayerNorm(64)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(64, 4, bias=False)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.norm(self.fc1(x)))))


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def make_batches(n: int = STEPS, size: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 8, generator=g), torch.randint(0, 4, (size,), generator=g)) for _ in range(n)]


def twins(make_opt, seed: int = 0):
    """Two identical (model, optimizer) pairs: one for eager, one for acir."""
    torch.manual_seed(seed)
    model = Net()
    ref = copy.deepcopy(model)
    return (model, make_opt(model)), (ref, make_opt(ref))


def assert_same(model, opt, ref, ref_opt, what: str = "") -> None:
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), f"{what}: model {name} differs"
    sa, sb = opt.state_dict(), ref_opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"], f"{what}: param groups differ"
    assert sa["state"].keys() == sb["state"].keys(), f"{what}: state of other parameters"
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys(), f"{what}: state keys of parameter {k}"
        for key, v in sa["state"][k].items():
            w = sb["state"][k][key]
            assert (torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w), f"{what}: state {k}:{key} differs"


def eager_step(model, opt, batch, clip=None):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach()


def run_both(make_opt, *, batches=None, schedulers=None, budget=None, clip=None, between=None, **compile_kw):
    """Train ``STEPS`` steps eagerly and compiled from identical starts; compare after every step."""
    (model, opt), (ref, ref_opt) = twins(make_opt)
    batches = batches or make_batches()
    sched = schedulers(opt) if schedulers else None
    ref_sched = schedulers(ref_opt) if schedulers else None
    step = acir.compile(model, opt, loss_fn, batches[0], budget=budget, clip_grad_norm=clip, quiet=True,
                        profile_reps=1, **compile_kw)
    for k, b in enumerate(batches):
        torch.manual_seed(100 + k)
        got = step(b)
        torch.manual_seed(100 + k)
        want = eager_step(ref, ref_opt, b, clip)
        assert torch.equal(got, want), f"step {k}: loss {got.item()} vs {want.item()}"
        assert_same(model, opt, ref, ref_opt, f"step {k}")
        if sched is not None:
            for s, r in zip(sched if isinstance(sched, list) else [sched],
                            ref_sched if isinstance(ref_sched, list) else [ref_sched]):
                if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    s.step(got.item())
                    r.step(want.item())
                else:
                    s.step()
                    r.step()
        if between is not None:
            between(k, (model, opt), (ref, ref_opt))
    return step


def groups(model, **decayed):
    """The usual two groups: weight decay for weights, none for biases and norms."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and "norm" not in n]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and "norm" not in n)]
    return [{"params": decay, **decayed}, {"params": rest, "weight_decay": 0.0}]


OPTIMIZERS = {
    "sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.05),
    "sgd-momentum-dampening": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, dampening=0.3),
    "sgd-nesterov-wd-maximize": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.8, nesterov=True,
                                                          weight_decay=1e-3, maximize=True),
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
    "adam-wd-amsgrad": lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adam-maximize": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.8, 0.95), maximize=True),
    "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1),
    "adamw-amsgrad": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, amsgrad=True, eps=1e-6),
    "adagrad": lambda m: torch.optim.Adagrad(m.parameters(), lr=0.05),
    "adagrad-lr-decay-wd-init": lambda m: torch.optim.Adagrad(m.parameters(), lr=0.05, lr_decay=0.1, weight_decay=1e-2,
                                                              initial_accumulator_value=0.1, eps=1e-8),
    "adagrad-maximize-groups": lambda m: torch.optim.Adagrad(groups(m, weight_decay=1e-2, lr=0.02), lr=0.05,
                                                             lr_decay=0.01, maximize=True),
    "rmsprop": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-2),
    "rmsprop-centered-momentum": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-2, alpha=0.9, centered=True,
                                                               momentum=0.9),
    "rmsprop-momentum-wd-maximize": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-3, momentum=0.5,
                                                                  weight_decay=1e-2, eps=1e-6, maximize=True),
    "rmsprop-centered-wd": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-2, centered=True, weight_decay=1e-3),
    "adamax": lambda m: torch.optim.Adamax(m.parameters(), lr=1e-2),
    "adamax-wd-maximize": lambda m: torch.optim.Adamax(m.parameters(), lr=2e-3, betas=(0.8, 0.99), weight_decay=1e-2,
                                                       maximize=True),
    "nadam": lambda m: torch.optim.NAdam(m.parameters(), lr=1e-2),
    "nadam-wd-momentum-decay": lambda m: torch.optim.NAdam(m.parameters(), lr=1e-2, weight_decay=1e-2,
                                                           momentum_decay=0.1),
    "nadam-decoupled-maximize": lambda m: torch.optim.NAdam(m.parameters(), lr=1e-2, betas=(0.8, 0.95),
                                                            weight_decay=0.1, decoupled_weight_decay=True,
                                                            maximize=True),
    "radam": lambda m: torch.optim.RAdam(m.parameters(), lr=1e-2),
    "radam-wd-maximize": lambda m: torch.optim.RAdam(m.parameters(), lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2,
                                                     maximize=True, eps=1e-6),
    "radam-decoupled": lambda m: torch.optim.RAdam(m.parameters(), lr=1e-2, weight_decay=0.1,
                                                   decoupled_weight_decay=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_eager(name):
    run_both(OPTIMIZERS[name])


@pytest.mark.parametrize("name", ["sgd-momentum-dampening", "adamw", "rmsprop-centered-momentum",
                                  "nadam-decoupled-maximize"])
def test_optimizer_matches_eager_with_a_budget(name):
    step = run_both(OPTIMIZERS[name], budget="90%")  # this small net's floor is near 85%
    assert step.plan is not None and step.plan.recomputed()


SCHEDULERS = {
    "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS),
    "onecycle-momentum": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=STEPS),
    "lambda-warmup": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda k: min(1.0, (k + 1) / 4)),
    "plateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5),
    "sequential": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=3),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)], milestones=[3]),
}


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
@pytest.mark.parametrize("opt", ["adam", "sgd-momentum-dampening", "rmsprop-centered-momentum", "nadam"])
def test_schedulers_are_read_at_every_step(sched, opt):
    """OneCycleLR cycles Adam's beta1 and SGD's momentum too: every hyper-parameter is live."""
    run_both(OPTIMIZERS[opt], schedulers=SCHEDULERS[sched])


def test_radam_is_captured_again_when_its_rectification_switches_on():
    """With beta2 = 0.999, RAdam's rho_t passes 5 at the sixth step: a new decision, a second graph."""
    for name in ("radam", "radam-decoupled"):
        step = run_both(OPTIMIZERS[name])
        assert step.captures == 2 and step.graphs == 2


def test_parameter_groups_with_their_own_values():
    run_both(lambda m: torch.optim.AdamW(groups(m, weight_decay=0.05, lr=3e-3), lr=1e-2))
    run_both(lambda m: torch.optim.SGD(groups(m, weight_decay=1e-2, momentum=0.5), lr=0.05, momentum=0.9))


def test_clipping_matches_clip_grad_norm():
    step = run_both(OPTIMIZERS["adam"], clip=0.05)
    assert isinstance(step.last_total_norm, torch.Tensor) and step.last_total_norm.numel() == 1


def test_a_smaller_last_batch_is_captured_again():
    batches = make_batches(5) + [make_batches(1, size=3, seed=9)[0]] + make_batches(2, seed=4)
    step = run_both(OPTIMIZERS["adam"], batches=batches, budget="90%")
    assert step.graphs == 2 and step.captures == 2


def test_a_number_in_the_batch_is_read_not_baked_in():
    """A Python float in the batch selects a graph of its own (it is never frozen into the step)."""
    def scaled_loss(model, batch):
        x, y, scale = batch
        return nn.functional.cross_entropy(model(x), y) * scale

    torch.manual_seed(0)
    model = Net()
    ref = copy.deepcopy(model)
    opt, ref_opt = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(ref.parameters(), lr=0.1)
    x, y = make_batches(1)[0]
    step = acir.compile(model, opt, scaled_loss, (x, y, 1.0), quiet=True)
    for scale in (1.0, 3.0, 1.0):
        torch.manual_seed(5)
        got = step((x, y, scale))
        torch.manual_seed(5)
        ref_opt.zero_grad(set_to_none=True)
        want = scaled_loss(ref, (x, y, scale))
        want.backward()
        ref_opt.step()
        assert torch.equal(got, want.detach())
        assert_same(model, opt, ref, ref_opt, f"scale {scale}")
    assert step.graphs == 2


def test_frozen_and_unused_parameters_are_skipped_as_torch_skips_them():
    class WithUnused(Net):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(3, 3)

    torch.manual_seed(0)
    model = WithUnused()
    model.fc1.bias.requires_grad_(False)
    ref = copy.deepcopy(model)
    opt, ref_opt = torch.optim.Adam(model.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    step = acir.compile(model, opt, loss_fn, make_batches(1)[0], quiet=True)
    assert not opt.state  # compiling creates no state
    for k, b in enumerate(make_batches(4)):
        torch.manual_seed(k)
        step(b)
        torch.manual_seed(k)
        eager_step(ref, ref_opt, b)
        assert_same(model, opt, ref, ref_opt, f"step {k}")
    # unfreezing mid-training: the step is captured again and the bias trains from then on
    model.fc1.bias.requires_grad_(True)
    ref.fc1.bias.requires_grad_(True)
    for k, b in enumerate(make_batches(3, seed=3)):
        torch.manual_seed(k)
        step(b)
        torch.manual_seed(k)
        eager_step(ref, ref_opt, b)
        assert_same(model, opt, ref, ref_opt, f"unfrozen step {k}")


def test_state_dict_save_and_resume():
    """state_dict() after compiled steps is eager's; loading a checkpoint between calls resumes bit for bit."""
    def checkpoint_then_resume(k, acir_pair, eager_pair):
        if k != 4:
            return
        model, opt = acir_pair
        saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
        # train on from elsewhere, then resume from the checkpoint: both runs continue from it
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        opt.load_state_dict(saved[1])
        model.load_state_dict(saved[0])

    run_both(OPTIMIZERS["sgd-momentum-dampening"], between=checkpoint_then_resume,
             schedulers=SCHEDULERS["cosine"])
    run_both(OPTIMIZERS["adamw"], between=checkpoint_then_resume)


def test_what_cannot_be_honoured_is_refused_at_compile_time():
    torch.manual_seed(0)
    model = Net()
    b = make_batches(1)[0]

    def refused(opt, match, m=model, err=CaptureError):
        with pytest.raises(err, match=match):
            acir.compile(m, opt, loss_fn, b, quiet=True)

    refused(torch.optim.LBFGS(model.parameters()), "closure")
    refused(torch.optim.Adam(model.parameters(), fused=True), "fused=True")
    refused(torch.optim.Adam(model.parameters(), foreach=True), "foreach=True")
    refused(torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01)), "Tensor")

    class MyAdam(torch.optim.Adam):
        def step(self, closure=None):
            return super().step(closure)

    refused(MyAdam(model.parameters()), "subclasses Adam")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = opt.register_step_post_hook(lambda *a: None)
    refused(opt, "step hooks")
    handle.remove()
    h = model.fc1.register_forward_hook(lambda *a: None)
    refused(torch.optim.SGD(model.parameters(), lr=0.1), "forward hooks")
    h.remove()
    h = model.fc1.weight.register_hook(lambda g: g)
    refused(torch.optim.SGD(model.parameters(), lr=0.1), "tensor hook")
    h.remove()
    refused(torch.optim.SGD(model.parameters(), lr=0.1), "has no parameters", m=nn.ReLU(), err=UsageError)
    with pytest.raises(UsageError, match="schedule"):
        acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, b, schedule="bogus")
    with pytest.raises(UsageError, match="profile_reps"):
        acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, b, budget="60%", profile_reps=0)
    with pytest.raises(UsageError, match="torch.nn.Module"):
        acir.compile(None, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, b)
    with pytest.raises(UsageError, match="clip_grad_norm"):
        acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, b, clip_grad_norm=-1.0)
    with pytest.raises(UsageError, match="not in the optimizer"):
        acir.compile(model, torch.optim.SGD(model.fc2.parameters(), lr=0.1), loss_fn, b, clip_grad_norm=1.0)
    # a tensor the loss closes over, or a plain tensor attribute: its value would be baked in
    w = torch.rand(b[0].shape[0])
    with pytest.raises(CaptureError, match="register it as a buffer"):
        acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     lambda m, batch: (loss_fn(m, batch) * w).sum(), b, quiet=True)
    model.scale = torch.ones(())
    with pytest.raises(CaptureError, match="register it as a buffer"):
        acir.compile(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     lambda m, batch: loss_fn(m, batch) * m.scale, b, quiet=True)
    del model.scale


def test_a_batch_of_another_structure_or_dtype_is_an_error():
    (model, opt), _ = twins(OPTIMIZERS["adam"])
    x, y = make_batches(1)[0]
    step = acir.compile(model, opt, loss_fn, (x, y), quiet=True)
    with pytest.raises(RunError, match="structure"):
        step([x, y, x])
    with pytest.raises(RunError, match="dtypes and devices"):
        step((x.double(), y))


@pytest.mark.parametrize("name, clip, budget", [("sgd-momentum-dampening", 0.05, None), ("adamw", None, "95%"),
                                               ("adam", 0.1, "95%")])
def test_accumulation_matches_the_eager_loop(name, clip, budget):
    """K micro-batches per update: (loss / K).backward() each, then clip, step, zero_grad(set_to_none=True)."""
    k_acc = 3
    (model, opt), (ref, ref_opt) = twins(OPTIMIZERS[name])
    batches = make_batches(8) + [make_batches(1, size=5, seed=7)[0]]  # a smaller batch mid-accumulation too
    step = acir.compile(model, opt, loss_fn, batches[0], accumulate=k_acc, clip_grad_norm=clip, budget=budget,
                        quiet=True, profile_reps=1)
    for k, b in enumerate(batches):
        torch.manual_seed(100 + k)
        got = step(b)
        torch.manual_seed(100 + k)
        want = loss_fn(ref, b)
        (want / k_acc).backward()
        if (k + 1) % k_acc == 0:
            if clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
                assert torch.equal(step.last_total_norm, norm)
            ref_opt.step()
            ref_opt.zero_grad(set_to_none=True)
        assert torch.equal(got, want.detach()), f"micro-batch {k}"
        for (n, p), q in zip(model.named_parameters(), ref.parameters()):
            assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.equal(p.grad, q.grad)), \
                f"micro-batch {k}: {n}.grad"
        assert_same(model, opt, ref, ref_opt, f"micro-batch {k}")


def test_cli_captures_clipping_and_accumulation(tmp_path):
    """acir-capture --accumulate K --clip-grad-norm MAX records both in the provenance and captures the last
    micro-batch; acir-run --check replays the K-1 earlier micro-batches eagerly and checks it, also rewritten."""
    from conftest import cli

    from acir.ir.artifact import read_path
    from acir.ir.graph import InputKind

    art, rew = str(tmp_path / "a.acir"), str(tmp_path / "r.acir")
    r = cli("acir-capture", "mlp", "-b", "4", "--accumulate", "3", "--clip-grad-norm", "0.5", "--optimizer", "sgd",
            "-o", art)
    assert r.returncode == 0, r.stderr.decode()
    m = read_path(art)
    assert (m.header.provenance.accumulate, m.header.provenance.clip_grad_norm) == (3, 0.5)
    assert any(i.kind is InputKind.GRADIENT for i in m.graph.inputs)
    r = cli("acir-opt", art, "-p", "profile{reps=1,warmup=0},liveness,recompute-all,rewrite", "-o", rew)
    assert r.returncode == 0, r.stderr.decode()
    for f in (art, rew):
        r = cli("acir-run", f, "--check")
        assert r.returncode == 0 and b"bit-identical" in r.stderr, r.stderr.decode()
    r = cli("acir-capture", "mlp", "--accumulate", "0")
    assert r.returncode == 1 and b"--accumulate must be at least 1" in r.stderr


def test_switching_modules_to_eval_and_back_is_captured_again():
    """``model.eval()`` in the middle of training (dropout off, batch norm on its running
    statistics, as some loops do for a phase) and ``model.train()`` later, and a norm layer
    frozen in eval mode while the rest trains: each mode pattern is its own graph. (The step
    kept running the train-mode graph before, silently.)"""
    def switch(k, mine, ref):
        for m, _ in (mine, ref):
            if k == 2:
                m.eval()
            elif k == 5:
                m.train()
            elif k == 7:
                m.norm.eval()

    step = run_both(lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2), between=switch)
    assert step.captures >= 3


def test_a_hook_registered_after_compiling_is_refused_at_the_next_call():
    (model, opt), _ = twins(lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    batches = make_batches(2)
    step = acir.compile(model, opt, loss_fn, batches[0], quiet=True)
    step(batches[0])
    handle = model.fc1.register_forward_hook(lambda mod, args, out: out * 2)
    with pytest.raises(CaptureError, match="fc1 .*forward hooks"):
        step(batches[1])
    handle.remove()
    step(batches[1])


def test_an_optimizer_parameter_replaced_in_the_model_is_refused():
    (model, opt), _ = twins(lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    batches = make_batches(2)
    step = acir.compile(model, opt, loss_fn, batches[0], quiet=True)
    step(batches[0])
    model.fc2.weight = nn.Parameter(model.fc2.weight.detach().clone())
    with pytest.raises(CaptureError, match="not in the model"):
        step(batches[1])


class _PythonRandomDepth(Net):
    """Stochastic depth written with Python's generator: a branch a graph would bake in."""

    def forward(self, x):
        import random

        h = torch.relu(self.norm(self.fc1(x)))
        if random.random() < 0.5:
            h = h * 0.5
        return self.fc2(h)


class _CountingForward(Net):
    """A counter the forward increments and reads (warm-up by call count)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x) * (0.5 if self.calls < 3 else 1.0)


class _BranchOnValue(Net):
    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h if h.sum() > 0 else -h)


@pytest.mark.parametrize("cls, words", [(_PythonRandomDepth, "draws from Python's random module"),
                                        (_CountingForward, "the forward changes the model's calls"),
                                        (_BranchOnValue, "decides something from a tensor's values")])
def test_what_a_graph_would_bake_in_is_refused(cls, words):
    """Eagerly these differ from call to call; a captured graph would repeat its traced choice."""
    torch.manual_seed(0)
    model = cls()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CaptureError, match=words):
        acir.compile(model, opt, loss_fn, make_batches(1)[0], quiet=True)
