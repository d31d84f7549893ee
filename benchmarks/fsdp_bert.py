"""BERT-base under sharded data parallelism on CPU ranks: FSDP2, FSDP2 + checkpoint per layer, and acir.

Not a test. Run under torchrun (gloo)::

    torchrun --nproc-per-node 2 benchmarks/fsdp_bert.py --batch 4 --out /tmp/fsdp_bert_2.json
    torchrun --nproc-per-node 4 benchmarks/fsdp_bert.py --batch 4 --out /tmp/fsdp_bert_4.json
    .venv/bin/python benchmarks/fsdp_bert.py --batch 4 --out /tmp/fsdp_bert_1.json   # one process: acir's floor only

Every rank builds the zoo's BERT-base (``BertForMaskedLM`` from the bert-base-uncased config, random
weights, seed 0: the same start on every rank) and trains it with AdamW on its own batches (the same
batches, and the same dropout seeds per step, in every configuration), one configuration after another:

(a) ``FSDP2``: ``fully_shard`` on every encoder layer and on the root, eager zero_grad/backward/step;
(b) ``FSDP2+ckpt``: the same with every encoder layer wrapped in ``checkpoint_wrapper`` (``torch.utils.checkpoint``,
    ``use_reentrant=False``) before ``fully_shard``;
(c) ``acir``: ``acir.compile(..., distributed="fsdp")`` without a budget, then with ``budget=f"{B}B"``, B = (b)'s
    measured peak (the largest over the ranks: every rank must plan to the same budget), then lower fractions of B
    (``--fractions``). The planner's floor is probed first with a budget of 1 byte, which every rank refuses
    (``InfeasibleBudget`` states the smallest peak the planner reaches). At the first fraction acir refuses (the
    rewritten step's simulated peak must fit, and it can be above the plan's), one more run at the lowest simulated
    peak that refusal states (the largest over the ranks): acir's floor in practice. Every rank plans the same step
    on rank 0's times, so the ranks refuse together; a budget between two ranks' floors would leave one rank waiting
    in a collective.

``--only`` picks a subset (``fsdp2,acir --steps 4``: more timed steps of the two without recomputation).

Each configuration runs 1 warm-up step, ``--steps`` timed steps (median wall time, after a barrier) and one
more step whose peak is measured: live tensor storages over the step, the persistent tensors being this rank's
parameter shards, optimizer state and batch (``acir.runtime.measure``'s tracker; FSDP2 frees and re-allocates its
gathered parameters by resizing storages in place, ``UntypedStorage.resize_``, which the dispatcher does not see,
so the tracker also follows resizes while it measures; DTensors count as their local tensors). For acir the
simulated peak (``LIVENESS``) of the compiled step is reported too. Losses of (b) and (c) are compared with (a)'s at
every step with ``torch.equal``.

Without torchrun (one process) only acir's single-process floor is probed (``acir.compile`` without
``distributed``, budget 1 byte, then once more at the floor it states), for the per-rank floor against N.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import statistics
import sys
import time
import traceback
import weakref


def local(t):
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


@contextlib.contextmanager
def resize_following(tracker):
    """While measuring: count ``UntypedStorage.resize_`` (FSDP2's free and re-allocation of gathered parameters)
    in ``tracker``'s live bytes, and register DTensors by their local tensors."""
    import torch

    orig_resize = torch.UntypedStorage.resize_
    orig_register = tracker.register

    def register(t):
        orig_register(local(t))

    def resize_(self, size):
        before = self.nbytes()
        out = orig_resize(self, size)
        after = self.nbytes()
        key = id(self)
        if key not in tracker.live:  # existed before the step at this size, uncounted (FSDP2's: 0 bytes)
            tracker.live[key] = 0
            weakref.finalize(self, tracker._free, key)
        tracker.live[key] += after - before
        tracker.resizes += 1
        tracker.current += after - before
        tracker.peak = max(tracker.peak, tracker.current)
        return out

    tracker.resizes = 0
    torch.UntypedStorage.resize_ = resize_
    tracker.register = register
    try:
        yield tracker
    finally:
        torch.UntypedStorage.resize_ = orig_resize
        tracker.register = orig_register


def measured_peak(step_fn, persistent) -> tuple[int, int]:
    """The peak of live storage bytes over step_fn(), and how many storage resizes it followed."""
    from acir.runtime.measure import live_storage_tracker

    tracker = live_storage_tracker()
    with resize_following(tracker):
        tracker.register_all(persistent)
        with tracker:
            step_fn()
    return tracker.peak, tracker.resizes


def persistent_tensors(model, opt, batch) -> list:
    import torch

    out = [local(p) for p in model.parameters()]
    out += [local(v) for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    out += [v for v in batch.values()]
    return out


def build(args):
    import torch

    from acir.frontend.zoo import ZOO

    torch.manual_seed(0)  # the same parameters on every rank, as fully_shard requires
    wl = ZOO[args.model].build(args.batch, args.seq_len, 0)
    model = wl.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, opt, wl.loss_fn


def make_batches(args, rank: int, n: int) -> list[dict]:
    import torch
    from transformers import BertConfig

    vocab = BertConfig().vocab_size
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data, the same in every configuration
    return [{"input_ids": torch.randint(0, vocab, (args.batch, args.seq_len), generator=g),
             "attention_mask": torch.ones(args.batch, args.seq_len, dtype=torch.int64),
             "labels": torch.randint(0, vocab, (args.batch, args.seq_len), generator=g)} for _ in range(n)]


def layers_of(model):
    return model.bert.encoder.layer


def run_steps(step_fn, model, opt, batches, rank: int, barrier) -> dict:
    """1 warm-up, len(batches) - 2 timed, 1 measured step; step_fn(batch) returns the loss."""
    import torch

    losses, times = [], []
    n = len(batches)
    for k, batch in enumerate(batches[:-1]):
        barrier()
        torch.manual_seed(1000 * rank + k)  # each rank its own dropout masks, the same in every configuration
        t0 = time.perf_counter()
        losses.append(step_fn(batch).detach().clone())
        if k > 0:
            times.append(time.perf_counter() - t0)
    barrier()
    torch.manual_seed(1000 * rank + n - 1)
    box = []
    peak, resizes = measured_peak(lambda: box.append(step_fn(batches[-1]).detach().clone()),
                         persistent_tensors(model, opt, batches[-1]))
    losses.append(box[0])
    return {"losses": losses, "step_s": times, "median_step_s": statistics.median(times), "peak_bytes": peak,
            "storage_resizes": resizes}


def eager_fsdp(args, batches, rank: int, checkpointed: bool, barrier) -> dict:
    import torch
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
    from torch.distributed.fsdp import fully_shard

    model, opt, loss_fn = build(args)
    layers = layers_of(model)
    if checkpointed:
        for i in range(len(layers)):
            layers[i] = checkpoint_wrapper(layers[i], checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)  # on the DTensor parameters

    def step(batch):
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return run_steps(step, model, opt, batches, rank, barrier)  # the model and optimizer die with this frame


def acir_fsdp(args, batches, rank: int, budget: int | None, barrier) -> dict:
    import acir
    from acir.analysis.simulator import simulate
    from acir.ir.analyses import LIVENESS

    model, opt, loss_fn = build(args)
    t0 = time.perf_counter()
    step = acir.compile(model, opt, loss_fn, batches[0], distributed="fsdp", quiet=True, profile_reps=args.profile_reps,
                        budget=None if budget is None else f"{budget}B")
    compile_s = time.perf_counter() - t0
    if LIVENESS in step.module.analyses:  # planned
        live = step.module.analyses[LIVENESS]
        simulated, held = live.simulated_peak_bytes, live.persistent_bytes
    else:
        t = simulate(step.module.graph)
        simulated, held = t.peak_bytes, t.persistent_bytes
    plan = step.plan
    r = run_steps(step, model, opt, batches, rank, barrier)
    r.update(compile_s=compile_s, budget_bytes=budget, simulated_peak_bytes=simulated, persistent_bytes=held,
             planned_to_bytes=None if plan is None else plan.budget_bytes,
             predicted_peak_bytes=None if plan is None else plan.predicted_peak_bytes)
    del step, model, opt
    gc.collect()
    return r


def probe_floor(args, batch, distributed: str | None, check: bool = False) -> dict:
    """acir.compile at a budget of 1 byte: InfeasibleBudget states the floor (the smallest peak the planner reaches).
    ``check``: compile once more at that floor and report the rewritten step's simulated peak (or its refusal)."""
    import acir
    from acir.errors import InfeasibleBudget
    from acir.ir.analyses import LIVENESS

    model, opt, loss_fn = build(args)
    t0 = time.perf_counter()
    try:
        acir.compile(model, opt, loss_fn, batch, distributed=distributed, budget="1B", quiet=True,
                     profile_reps=args.profile_reps)
        out = {"floor_bytes": None, "message": "a budget of 1 byte was accepted"}
    except InfeasibleBudget as e:
        out = {"floor_bytes": e.floor_bytes, "message": str(e)}
    out["seconds"] = time.perf_counter() - t0
    del model, opt
    gc.collect()
    if check and out["floor_bytes"] is not None:
        model, opt, loss_fn = build(args)
        try:
            step = acir.compile(model, opt, loss_fn, batch, distributed=distributed, budget=f"{out['floor_bytes']}B",
                                quiet=True, profile_reps=args.profile_reps)
            out["at_floor_simulated_peak_bytes"] = step.module.analyses[LIVENESS].simulated_peak_bytes
            del step
        except InfeasibleBudget as e:
            out["at_floor_refused"] = str(e)
        del model, opt
        gc.collect()
    return out


def mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bert-base")
    ap.add_argument("--batch", type=int, default=2, help="per rank")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="timed steps (after 1 warm-up; 1 more is measured)")
    ap.add_argument("--fractions", default="1,0.9,0.75",
                    help="budgets for acir as fractions of FSDP2+ckpt's peak, in decreasing order; at the first that "
                         "acir refuses, one more run at the lowest peak it states (the largest over the ranks)")
    ap.add_argument("--profile-reps", type=int, default=1)
    ap.add_argument("--only", default="fsdp2,ckpt,acir,floor,budgets",
                    help="a comma-separated subset of: fsdp2, ckpt, acir (no budget), floor (the probe), budgets "
                         "(needs ckpt or --ckpt-peak)")
    ap.add_argument("--ckpt-peak", type=int, default=None,
                    help="FSDP2+ckpt's peak in bytes from an earlier run, for budgets without running ckpt again")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)

    import torch
    import torch.distributed as dist

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from acir.runtime.measure import ensure_malloc

    ensure_malloc()  # freed memory stays in the heap, as every acir timing
    distributed = "RANK" in os.environ
    result: dict = {"model": args.model, "batch_per_rank": args.batch, "seq_len": args.seq_len, "optimizer": "AdamW",
                    "threads_per_rank": torch.get_num_threads(), "torch": torch.__version__}
    if not distributed:
        batch = make_batches(args, 0, 1)[0]
        result["world"] = 1
        result["floor"] = [probe_floor(args, batch, None, check=True)]
        print(f"world 1: {json.dumps(result['floor'][0])}", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
        return 0

    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=20))
    rank, world = dist.get_rank(), dist.get_world_size()
    result["world"] = world
    batches = make_batches(args, rank, args.steps + 2)
    only = set(filter(None, args.only.split(",")))

    def say(msg: str) -> None:
        if rank == 0:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def gather(obj):
        out = [None] * world
        dist.all_gather_object(out, obj)
        return out

    mine: dict = {"rank": rank, "configs": {}}
    runs = mine["configs"]

    def note(name: str, r: dict) -> None:  # each rank's figures as they come, in case a later one fails
        print(f"rank {rank}: {name}: peak {r['peak_bytes']} B measured"
              + (f", {r['simulated_peak_bytes']} B simulated" if "simulated_peak_bytes" in r else "")
              + f", median step {r['median_step_s']:.2f} s, losses {[float(x) for x in r['losses']]}", flush=True)
    if "fsdp2" in only:
        say("FSDP2 ...")
        runs["FSDP2"] = eager_fsdp(args, batches, rank, False, dist.barrier)
        note("FSDP2", runs["FSDP2"])
    if "ckpt" in only:
        say("FSDP2 + checkpoint per layer ...")
        runs["FSDP2+ckpt"] = eager_fsdp(args, batches, rank, True, dist.barrier)
        note("FSDP2+ckpt", runs["FSDP2+ckpt"])
    if "acir" in only:
        say("acir, no budget ...")
        runs["acir"] = acir_fsdp(args, batches, rank, None, dist.barrier)
        note("acir", runs["acir"])
    top_floor = B = None
    if "floor" in only:
        say("acir's floor (budget 1 byte) ...")
        mine["floor"] = probe_floor(args, batches[0], "fsdp")
        floors = gather(mine["floor"]["floor_bytes"])
        top_floor = max(f for f in floors if f is not None) if all(f is not None for f in floors) else None
        say(f"acir floors per rank: {floors}")
    from acir.errors import InfeasibleBudget

    budgets = []
    if "budgets" in only and ("FSDP2+ckpt" in runs or args.ckpt_peak):
        ckpt_peak = torch.tensor(runs["FSDP2+ckpt"]["peak_bytes"] if "FSDP2+ckpt" in runs else args.ckpt_peak)
        dist.all_reduce(ckpt_peak, op=dist.ReduceOp.MAX)
        B = int(ckpt_peak)
        say(f"FSDP2 + checkpoint's peak, the largest over the ranks: {B} bytes")
        budgets = [(f"acir@{float(x):g}", int(B * float(x))) for x in args.fractions.split(",")]
    fitted = None  # the smallest budget acir fitted
    while budgets:
        name, budget = budgets.pop(0)
        if top_floor is not None and budget < top_floor:
            say(f"{name}: budget {budget} is below the planner's largest floor {top_floor}: not run")
            continue
        say(f"{name}: budget {budget} bytes ...")
        try:
            runs[name] = acir_fsdp(args, batches, rank, budget, dist.barrier)
            note(name, runs[name])
            fitted = budget if fitted is None else min(fitted, budget)
        except InfeasibleBudget as e:  # every rank plans the same step on the same times: they refuse together
            runs[name] = {"budget_bytes": budget, "infeasible": str(e), "floor_bytes": e.floor_bytes}
            print(f"rank {rank}: {name}: {e}", flush=True)
            lowest = max(gather(e.floor_bytes))  # the lowest simulated peak its plans reached, on every rank
            # that is the lowest over this budget's re-plans, not a floor: above a budget that fitted, it says nothing
            if not name.startswith("acir@floor") and (fitted is None or lowest < fitted):
                budgets = [(f"acir@floor ({lowest} B)", lowest)]
            else:
                budgets = []
        except Exception as e:  # reported, not hidden
            runs[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            print(f"rank {rank}: {name} failed:\n{runs[name]['traceback']}", flush=True)
            raise
    if "FSDP2" in runs:
        ref = runs["FSDP2"]["losses"]
        for name, r in runs.items():
            if "losses" in r:
                r["losses_equal_fsdp2"] = [bool(torch.equal(a, b)) for a, b in zip(r["losses"], ref)]
    for r in runs.values():
        if "losses" in r:
            r["losses"] = [float(x) for x in r["losses"]]
    everyone = gather(mine)
    result["ckpt_peak_max_bytes"] = B
    result["ranks"] = everyone
    if rank == 0:
        print(f"\n{args.model}, batch {args.batch}/rank, seq {args.seq_len}, AdamW, {world} gloo ranks "
              f"({torch.get_num_threads()} thread(s) each)")
        print(f"{'config':<28} {'rank':>4} {'budget MiB':>10} {'measured MiB':>12} {'simulated MiB':>13} "
              f"{'median step s':>13}  losses == FSDP2's")
        for name in everyone[0]["configs"]:
            for who in everyone:
                r = who["configs"][name]
                if "error" in r:
                    print(f"{name:<28} {who['rank']:>4}  FAILED: {r['error'][:200]}")
                    continue
                if "infeasible" in r:
                    print(f"{name:<28} {who['rank']:>4} {mib(r['budget_bytes']):>10}  InfeasibleBudget, "
                          f"lowest simulated peak {mib(r['floor_bytes'])} MiB")
                    continue
                print(f"{name:<28} {who['rank']:>4} {mib(r.get('budget_bytes')):>10} {mib(r['peak_bytes']):>12} "
                      f"{mib(r.get('simulated_peak_bytes')):>13} {r['median_step_s']:>13.2f}  "
                      f"{r.get('losses_equal_fsdp2', '-')}")
        for who in everyone:
            if "floor" in who:
                f = who["floor"]
                print(f"rank {who['rank']}: acir floor {mib(f['floor_bytes'])} MiB ({f['message']})")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
