"""BERT-base or ResNet-152 under data parallelism on CPU ranks: DDP, DDP + checkpoint per block, and acir.

Not a test. Run under torchrun (gloo)::

    MASTER_ADDR=127.0.0.1 torchrun --nproc-per-node 2 benchmarks/ddp_bench.py --model bert-base --batch 4 \
        --out bert.json
    MASTER_ADDR=127.0.0.1 torchrun --nproc-per-node 2 benchmarks/ddp_bench.py --model resnet152 --batch 4 \
        --image-size 224 --out r152.json

Every rank builds the model (BERT-base: ``BertForMaskedLM`` from the zoo's bert-base-uncased config, sequence
``--seq-len``; ResNet-152: torchvision's, 1000 classes, ``--image-size``; random weights, seed 0: the same start on
every rank) and trains it with AdamW on its own batches (the same batches, and the same dropout seeds per step, in
every configuration), one configuration after another in the same process:

(a) ``DDP``: ``DistributedDataParallel(model)`` with its default settings, eager forward/backward/step/zero_grad;
(b) ``DDP+ckpt``: the same with every block (BERT: encoder layer; ResNet-152: ``Bottleneck``) wrapped in
    ``checkpoint_wrapper`` (``torch.utils.checkpoint``, ``use_reentrant=False``) before ``DistributedDataParallel``;
(c) ``acir``: ``acir.compile(..., distributed="ddp")`` without a budget, then with ``budget=f"{B}B"``, B = (b)'s
    measured peak (the largest over the ranks, with an ``all_reduce(MAX)``: every rank plans to the same budget).
    An ``InfeasibleBudget`` is recorded and the run goes on.

Each configuration runs 1 warm-up step, ``--steps`` timed steps (median wall time, after a barrier) and one more
step whose peak is measured: live tensor storages over the step (``acir.runtime.measure``'s tracker), the
persistent tensors being the parameters, the optimizer state and the batch. DDP's reducer keeps one flat gradient
buffer per bucket allocated for the whole run (allocated outside the measured step and not reachable from Python);
the tracker counts each only from the first operator that writes into it in the backward. So every storage first
seen in the measured step that is still alive after it (a steady loop's persistent memory: DDP's buckets, and the
loss's copy) is counted from the step's start ("peak"; the tracker's own figure is reported too, and the buckets'
bytes, the sizes of ``reducer._get_zeros_like_grad_buckets()``, for comparison). acir's compiled step allocates its
bucket buffers inside the step and frees them in it. For acir the simulated peak (``LIVENESS``) is reported too.
Losses of (b) and (c) are compared with (a)'s at every step with ``torch.equal``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import sys
import time
import traceback


def persistent_tensors(model, opt, batch) -> list:
    import torch

    out = list(model.parameters())
    out += [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    out += list(batch.values()) if isinstance(batch, dict) else list(batch)
    return out


def measured_peak(step_fn, persistent) -> tuple[int, int, int]:
    """The peak of live storage bytes over step_fn(), with every storage that outlives the step counted from its
    start: (peak, the tracker's own peak, the bytes of those storages).

    A storage that exists before the step but is not in ``persistent`` (DDP's reducer buckets: not reachable from
    Python) is counted by the tracker only from the first operator that returns it (the reducer's ``mul_out`` into
    a bucket view, in the backward). Whatever outlives one step of a steady loop was alive at its start too, so
    each storage first seen in the step and still alive after it is added to every point of the step before it
    was first seen. For acir's step that is the loss's copy alone (its bucket buffers die in the step)."""
    from acir.runtime.measure import live_storage_tracker

    tracker = live_storage_tracker()
    tracker.register_all(persistent)
    pre = set(tracker.live)
    currents: list[int] = []  # live bytes after each operator
    first_op: dict[int, int] = {}  # storage key -> the operator that first returned it (the last storage of that key)
    orig_register = tracker.register

    def register(t) -> None:
        import torch

        key = id(t.untyped_storage()) if isinstance(t, torch.Tensor) else None
        new = key is not None and key not in tracker.live
        orig_register(t)
        if new and key in tracker.live:
            first_op[key] = len(currents)

    tracker.register = register
    tracker.after_op = lambda func, cur: currents.append(cur)
    with tracker:
        step_fn()
    survivors = {k: n for k, n in tracker.live.items() if k not in pre}
    unseen = sum(survivors.values())
    by_op: dict[int, int] = {}
    for k, n in survivors.items():
        by_op[first_op.get(k, 0)] = by_op.get(first_op.get(k, 0), 0) + n
    peak = 0
    for i, cur in enumerate(currents):
        unseen -= by_op.get(i, 0)
        peak = max(peak, cur + unseen)
    return max(peak, tracker.peak), tracker.peak, sum(survivors.values())


def build(args):
    import torch

    from acir.frontend.zoo import ZOO

    torch.manual_seed(0)  # the same parameters on every rank
    wl = ZOO[args.model].build(args.batch, args.seq_len, args.image_size)
    model = wl.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, opt, wl.loss_fn


def make_batches(args, rank: int, n: int) -> list:
    import torch

    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data, the same in every configuration
    if args.model.startswith("resnet"):
        return [(torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g),
                 torch.randint(0, 1000, (args.batch,), generator=g)) for _ in range(n)]
    from transformers import BertConfig

    vocab = BertConfig().vocab_size
    return [{"input_ids": torch.randint(0, vocab, (args.batch, args.seq_len), generator=g),
             "attention_mask": torch.ones(args.batch, args.seq_len, dtype=torch.int64),
             "labels": torch.randint(0, vocab, (args.batch, args.seq_len), generator=g)} for _ in range(n)]


def block_lists(model) -> list:
    """The module lists whose children are the checkpointed blocks."""
    if hasattr(model, "bert"):
        return [model.bert.encoder.layer]
    return [model.layer1, model.layer2, model.layer3, model.layer4]  # ResNet: Bottleneck blocks


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
    peak, tracker_peak, survivors = measured_peak(lambda: box.append(step_fn(batches[-1]).detach().clone()),
                                                  persistent_tensors(model, opt, batches[-1]))
    losses.append(box[0])
    return {"losses": losses, "step_s": times, "median_step_s": statistics.median(times), "peak_bytes": peak,
            "tracker_peak_bytes": tracker_peak, "outliving_bytes": survivors}


def eager_ddp(args, batches, rank: int, checkpointed: bool, barrier) -> dict:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
    from torch.nn.parallel import DistributedDataParallel

    model, opt, loss_fn = build(args)
    blocks = 0
    if checkpointed:
        for layers in block_lists(model):
            for i in range(len(layers)):
                layers[i] = checkpoint_wrapper(layers[i], checkpoint_impl=CheckpointImpl.NO_REENTRANT)
                blocks += 1
    ddp = DistributedDataParallel(model)

    def step(batch):
        loss = loss_fn(ddp, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    r = run_steps(step, model, opt, batches, rank, barrier)
    buckets = ddp.reducer._get_zeros_like_grad_buckets()
    r["bucket_bytes"] = sum(b.buffer().nbytes for b in buckets)
    r["buckets"] = len(buckets)
    r["checkpointed_blocks"] = blocks
    del buckets
    return r  # the model, DDP and the optimizer die with this frame


def acir_ddp(args, batches, rank: int, budget: int | None, barrier) -> dict:
    import acir
    from acir.analysis.simulator import simulate
    from acir.ir.analyses import LIVENESS

    model, opt, loss_fn = build(args)
    t0 = time.perf_counter()
    step = acir.compile(model, opt, loss_fn, batches[0], distributed="ddp", quiet=True, profile_reps=args.profile_reps,
                        budget=None if budget is None else f"{budget}B")
    compile_s = time.perf_counter() - t0
    if LIVENESS in step.module.analyses:  # planned
        simulated = step.module.analyses[LIVENESS].simulated_peak_bytes
    else:
        simulated = simulate(step.module.graph).peak_bytes
    r = run_steps(step, model, opt, batches, rank, barrier)
    r.update(compile_s=compile_s, budget_bytes=budget, simulated_peak_bytes=simulated)
    del step, model, opt
    gc.collect()
    return r


def mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bert-base", choices=["bert-base", "resnet152"])
    ap.add_argument("--batch", type=int, default=4, help="per rank")
    ap.add_argument("--seq-len", type=int, default=128, help="BERT-base")
    ap.add_argument("--image-size", type=int, default=128, help="ResNet-152")
    ap.add_argument("--steps", type=int, default=2, help="timed steps (after 1 warm-up; 1 more is measured)")
    ap.add_argument("--profile-reps", type=int, default=1)
    ap.add_argument("--only", default="ddp,ckpt,acir,budget",
                    help="a comma-separated subset of: ddp, ckpt, acir (no budget), budget (needs ckpt)")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)

    import torch
    import torch.distributed as dist

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from acir.errors import InfeasibleBudget
    from acir.runtime.measure import ensure_malloc

    ensure_malloc()  # freed memory stays in the heap, as every acir timing
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=30))
    rank, world = dist.get_rank(), dist.get_world_size()
    batches = make_batches(args, rank, args.steps + 2)
    only = set(filter(None, args.only.split(",")))
    shape = (f"seq {args.seq_len}" if args.model == "bert-base" else f"image {args.image_size}x{args.image_size}")
    result: dict = {"model": args.model, "batch_per_rank": args.batch, "shape": shape, "optimizer": "AdamW",
                    "world": world, "threads_per_rank": torch.get_num_threads(), "torch": torch.__version__}

    def say(msg: str) -> None:
        if rank == 0:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    mine: dict = {"rank": rank, "configs": {}}
    runs = mine["configs"]

    def note(name: str, r: dict) -> None:  # each rank's figures as they come, in case a later one fails
        print(f"rank {rank}: {name}: peak {r['peak_bytes']} B (tracker {r['tracker_peak_bytes']} B"
              + f", outliving {r['outliving_bytes']} B"
              + (f", buckets {r['bucket_bytes']} B" if "bucket_bytes" in r else "")
              + (f", simulated {r['simulated_peak_bytes']} B" if "simulated_peak_bytes" in r else "")
              + f"), median step {r['median_step_s']:.2f} s {[round(t, 2) for t in r['step_s']]}, "
              f"losses {[float(x) for x in r['losses']]}", flush=True)

    def attempt(name: str, fn) -> None:
        say(f"{name} ...")
        try:
            runs[name] = fn()
            note(name, runs[name])
        except InfeasibleBudget as e:  # every rank plans the same step: they refuse together
            runs[name] = {"budget_bytes": getattr(e, "budget_bytes", None), "infeasible": str(e)}
            print(f"rank {rank}: {name}: InfeasibleBudget: {e}", flush=True)
            gc.collect()

    if "ddp" in only:
        attempt("DDP", lambda: eager_ddp(args, batches, rank, False, dist.barrier))
    if "ckpt" in only:
        attempt("DDP+ckpt", lambda: eager_ddp(args, batches, rank, True, dist.barrier))
    if "acir" in only:
        attempt("acir", lambda: acir_ddp(args, batches, rank, None, dist.barrier))
    budgets = []
    if "budget" in only and "peak_bytes" in runs.get("DDP+ckpt", {}):
        peak = torch.tensor(runs["DDP+ckpt"]["peak_bytes"])
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        result["ckpt_peak_max_bytes"] = int(peak)
        say(f"DDP + checkpoint's peak, the largest over the ranks: {int(peak)} bytes")
        budgets.append(("acir@ckpt", int(peak)))
    for name, budget in budgets:
        try:
            attempt(name, lambda: acir_ddp(args, batches, rank, budget, dist.barrier))
        except Exception as e:  # reported, not hidden
            runs[name] = {"budget_bytes": budget, "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()[-3000:]}
            print(f"rank {rank}: {name} failed:\n{runs[name]['traceback']}", flush=True)
            raise
        if "infeasible" in runs[name]:
            runs[name]["budget_bytes"] = budget
    if "DDP" in runs:
        ref = runs["DDP"]["losses"]
        for r in runs.values():
            if "losses" in r:
                r["losses_equal_ddp"] = [bool(torch.equal(a, b)) for a, b in zip(r["losses"], ref)]
    for r in runs.values():
        if "losses" in r:
            r["losses"] = [float(x) for x in r["losses"]]
    everyone = [None] * world
    dist.all_gather_object(everyone, mine)
    result["ranks"] = everyone
    if rank == 0:
        print(f"\n{args.model}, batch {args.batch}/rank, {shape}, AdamW, {world} gloo ranks "
              f"({torch.get_num_threads()} thread(s) each)")
        print(f"{'config':<18} {'rank':>4} {'budget MiB':>10} {'peak MiB':>9} {'tracker MiB':>11} {'buckets MiB':>11} "
              f"{'simulated MiB':>13} {'median step s':>13}  losses == DDP's")
        for name in everyone[0]["configs"]:
            for who in everyone:
                r = who["configs"][name]
                if "infeasible" in r:
                    print(f"{name:<18} {who['rank']:>4} {mib(r['budget_bytes']):>10}  InfeasibleBudget: "
                          f"{r['infeasible'][:300]}")
                    continue
                if "error" in r:
                    print(f"{name:<18} {who['rank']:>4}  FAILED: {r['error'][:200]}")
                    continue
                print(f"{name:<18} {who['rank']:>4} {mib(r.get('budget_bytes')):>10} {mib(r['peak_bytes']):>9} "
                      f"{mib(r['tracker_peak_bytes']):>11} {mib(r.get('bucket_bytes')):>11} "
                      f"{mib(r.get('simulated_peak_bytes')):>13} {r['median_step_s']:>13.2f}  "
                      f"{r.get('losses_equal_ddp', '-')}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
