"""acir-bench: peak memory and latency vs batch size, acir against no AC and against PyTorch's own answers."""

from __future__ import annotations

import os
import sys

from acir.tools._cli import make_parser, run_cli

EPILOG = """\
examples:
  acir-bench resnet152 -b 4,8,16,32 -o out/bench/resnet152
  acir-bench bert-base --seq-len 128 -b 4,8,16,32 --budgets 60%,40% --iters 5 -o out/bench/bert-base
  acir-bench resnet18 --image-size 64 -b 4,8 --configs noac,acir-mutwo,checkpoint --iters 3 -o out/bench/r18
  acir-bench gpt2-tiny -b 2,4 --configs all --torch-budgets 0.5 --iters 1 -o out/bench/tiny
  acir-bench bert-base --seq-len 128 -b 16 --budgets 60%,=checkpoint,=torch-budget-0.5 \
      --optimal-budgets =checkpoint -o out/bench/bert-matched   # acir at the peers' measured peaks
  acir-bench examples/user_model.py:make -b 8 --blocks Net -o out/bench/user
  acir-bench resnet50 -b 16,32 --device cuda -o out/bench/r50-cuda
  acir-bench --replot out/bench/resnet152/results.json -o out/bench/resnet152   # redraw, run nothing

configurations (--configs, default all; noac always runs, it is the baseline):
  eager         plain PyTorch: zero_grad, loss.backward(), optimizer.step()
  noac          the captured acir step without activation checkpointing (acir.compile)
  acir-mutwo    acir planned by mu-TWO at each of --budgets, rewritten (acir.compile(budget=, planner="mutwo"))
  acir-optimal  the same with the MILP optimum at each of --optimal-budgets (--time-limit seconds per solve)

A budget =NAME (e.g. =checkpoint) is the peak measured for configuration NAME at the same batch
size: the configuration is named acir-mutwo@NAME and is built after the peaks are measured, then
takes the same warm-up and peak iterations as the others; it answers "what does acir cost at
the memory the peer reaches". If that peak is below what recomputation can reach, it fails with
the smallest reachable peak as its reason. The budget floor is the lowest peak mu-TWO knows how
to reach on the workload (the bottom of a Pareto sweep: --budgets floor,25%,50%,75%,=checkpoint).
  checkpoint    torch.utils.checkpoint (use_reentrant=False) around every block: the children of an
                nn.ModuleList/nn.Sequential that repeat one class with submodules (ResNet BasicBlock/Bottleneck,
                BERT and GPT-2 layers), or the classes named by --blocks
  torch-budget  torch.compile with torch._functorch.config.activation_memory_budget at each of
                --torch-budgets (the aot_eager backend on CPU: AOT autograd and the min-cut partitioner,
                graphs run as they are; inductor on CUDA; --torch-backend to choose)

Every configuration is built from the same seed (--seed) and all of a batch size's stay alive in
one process: warm-up iterations of each in turn (the first compiles torch.compile's graphs), then
one iteration of each alone for its peak, then --iters rounds with one iteration of each, the
order rotated every round; the latency is the median. The RNG is seeded identically before every
iteration of every configuration, and at the end each one's loss, parameters, optimizer state and
buffers are compared with noac's, bit for bit: the "match" column. checkpoint replays batch-norm,
so it updates the running statistics twice (buffers differ); PyTorch's budget below 1.0 re-runs
dropout with fresh random numbers. A configuration that fails (an infeasible budget, a peer that
cannot compile, out of memory) is recorded as failed with its reason, and the run goes on.

Peak memory on the CPU: live tensor storages tracked at the dispatcher, each storage once,
including parameters, gradients, optimizer state and inputs (the tracker lets torch.compile'd
graphs run compiled and counts their ops; --allocator-peak also sums the profiler's allocation
events, which adds the scratch memory operators free before they return). On CUDA:
torch.cuda.max_memory_allocated over the iteration, less what the other configurations hold.
Latency on the CPU is measured with freed memory kept in the heap, as a GPU's caching allocator
does (otherwise glibc unmaps and re-faults big tensors every iteration, and saving memory looks
like a speed-up): acir-bench re-executes itself with
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 unless
--malloc default; the setting is recorded with every measurement. Beside the wall-clock latency,
the process's CPU time per iteration (cpu_s, cpu_change) is recorded: on a shared machine it
drifts less than wall-clock time.

Writes to -o DIR, after every model and batch size (so that a run stopped midway keeps what it
measured, and --resume takes it up there): results.csv and results.json (every measurement, and
in the JSON the machine: CPU, cores, memory, torch version, malloc setting), then memory.png and
latency.png (per model, memory-MODEL.png and latency-MODEL.png with several models) and
scatter.png. Progress goes to stderr (-q to silence): a log line per step, and on a terminal a
bar per model and batch size naming the configuration and round (with the profile's and the
MILP's bars under it while they build); the table goes to stdout.
"""


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _parser():
    p = make_parser("acir-bench", "Measure peak memory and iteration latency against batch size for acir's "
                    "activation checkpointing, no AC, torch.utils.checkpoint and PyTorch's memory-budget "
                    "partitioner, side by side in one process.", EPILOG)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="zoo model (acir-capture --list-models) or path/to/file.py:make; several run one after another")
    p.add_argument("-b", "--batch-sizes", default="4,8", help="comma-separated batch sizes (default 4,8)")
    p.add_argument("--seq-len", type=int, default=0, help="sequence length for BERT/GPT-2 (default: the model's, 128)")
    p.add_argument("--image-size", type=int, default=0, help="image size for ResNets (default: the model's, 224)")
    p.add_argument("--configs", default="all", help="all, or a comma-separated subset of: eager, noac, acir-mutwo, "
                                                   "acir-optimal, checkpoint, torch-budget (default all)")
    p.add_argument("--budgets", default="60%,40%",
                   help="acir budgets: percentages, bytes, floor (the lowest peak mu-TWO can reach), or =NAME for "
                        "the measured peak of configuration NAME of the same batch size, e.g. =checkpoint or "
                        "=torch-budget-0.2 (default 60%%,40%%)")
    p.add_argument("--optimal-budgets", default=None, metavar="BUDGETS",
                   help="acir-optimal's budgets, the same forms (default: --budgets)")
    p.add_argument("--torch-budgets", default="0.5,0.2",
                   help="activation_memory_budget values for torch-budget, in (0, 1] (default 0.5,0.2)")
    p.add_argument("--blocks", default="", metavar="CLASS[,CLASS...]",
                   help="checkpoint: wrap modules of these classes instead of the repeated blocks found")
    p.add_argument("--torch-backend", default="", help="torch.compile backend for torch-budget "
                                                       "(default aot_eager on cpu, inductor on cuda)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds, at least 1 (default 1)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"), help="default adam")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch (default 0)")
    p.add_argument("--step-seed", type=int, default=1234, help="seed set before iteration k: this + k (default 1234)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--profile-reps", type=int, default=3, help="profile repetitions before planning (default 3)")
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds per acir-optimal solve (default 30)")
    p.add_argument("--malloc", default="heap-retained", choices=("heap-retained", "default"),
                   help="CPU: keep freed memory in the heap (re-executes with GLIBC_TUNABLES; default) or not")
    p.add_argument("--allocator-peak", action="store_true",
                   help="CPU: also record the profiler's allocator-level peak (operator scratch included)")
    p.add_argument("-o", "--output", default="out/bench", metavar="DIR", help="output folder (default out/bench)")
    p.add_argument("--resume", action="store_true",
                   help="keep what an earlier run with the same settings wrote to -o DIR: a model and batch size "
                        "whose every configuration is in its results.json is not measured again")
    p.add_argument("--no-plots", action="store_true", help="write the CSV and JSON only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr (no log lines, no bars)")
    p.add_argument("--replot", metavar="RESULTS.json",
                   help="run nothing: draw the plots and print the table again from a results.json (into -o)")
    return p


def _options(args):
    from acir.analysis.budget import parse_budget
    from acir.bench.configs import FAMILIES, FLOOR
    from acir.bench.driver import BenchOptions
    from acir.errors import BenchError

    try:
        batches = tuple(int(x) for x in _split(args.batch_sizes))
    except ValueError:
        raise BenchError(f"bad --batch-sizes {args.batch_sizes!r}: comma-separated positive integers, e.g. 4,8,16")
    if not batches or min(batches) < 1:
        raise BenchError(f"bad --batch-sizes {args.batch_sizes!r}: comma-separated positive integers, e.g. 4,8,16")
    configs = FAMILIES if args.configs.strip() == "all" else tuple(_split(args.configs))
    unknown = [c for c in configs if c not in FAMILIES]
    if unknown or not configs:
        raise BenchError(f"unknown configuration {', '.join(unknown) or '(none)'}; choose all or from "
                         f"{', '.join(FAMILIES)}")
    budgets = tuple(_split(args.budgets))
    optimal_budgets = None if args.optimal_budgets is None else tuple(_split(args.optimal_budgets))
    for b in budgets + (optimal_budgets or ()):
        if not b.startswith("=") and b != FLOOR:
            parse_budget(b)  # a ParseError says what is wrong
    if not budgets and "acir-mutwo" in configs:
        raise BenchError("--budgets is empty; acir-mutwo needs at least one")
    if not (budgets if optimal_budgets is None else optimal_budgets) and "acir-optimal" in configs:
        raise BenchError("acir-optimal needs at least one budget (--budgets or --optimal-budgets)")
    try:
        tb = tuple(float(x) for x in _split(args.torch_budgets))
    except ValueError:
        raise BenchError(f"bad --torch-budgets {args.torch_budgets!r}: numbers in (0, 1], e.g. 0.5,0.2")
    if any(not 0 < x <= 1 for x in tb) or (not tb and "torch-budget" in configs):
        raise BenchError(f"bad --torch-budgets {args.torch_budgets!r}: numbers in (0, 1], e.g. 0.5,0.2")
    if args.iters < 1:
        raise BenchError("--iters must be at least 1")
    if args.warmup < 1:
        raise BenchError("--warmup must be at least 1: the first iteration compiles the torch.compile "
                         "configurations and is never measured")
    if args.seq_len < 0 or args.image_size < 0 or args.profile_reps < 1 or args.time_limit <= 0:
        raise BenchError("--seq-len and --image-size must be at least 0, --profile-reps at least 1, "
                         "--time-limit above 0")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise BenchError(f"unknown --device {args.device!r}; use cpu or cuda")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchError("--device cuda asked for, but torch sees no CUDA device on this machine")
    opts = BenchOptions(models=tuple(args.models), batch_sizes=batches, configs=configs, budgets=budgets,
                        optimal_budgets=optimal_budgets, torch_budgets=tb, seq_len=args.seq_len,
                        image_size=args.image_size, iters=args.iters, warmup=args.warmup, optimizer=args.optimizer,
                        lr=args.lr, seed=args.seed, step_seed=args.step_seed, device=args.device,
                        profile_reps=args.profile_reps, time_limit=args.time_limit, blocks=tuple(_split(args.blocks)),
                        torch_backend=args.torch_backend, allocator_peak=args.allocator_peak)
    _check_matched(opts)
    return opts


def _check_matched(opts) -> None:
    """Every ``=NAME`` budget names a configuration of the run that has a budget of its own."""
    from acir.bench.driver import config_specs
    from acir.errors import BenchError

    specs = config_specs(opts)
    plain = [sp.name for sp in specs if not sp.matched]
    for sp in specs:
        if sp.matched and sp.matched not in plain:
            raise BenchError(f"budget ={sp.matched}: no such configuration in this run (it would be one of "
                             f"{', '.join(plain)}); a budget =NAME is the measured peak of configuration NAME")


def _replot(args) -> int:
    from acir.bench.plots import write_plots
    from acir.bench.results import format_table, read_results
    from acir.errors import BenchError

    if args.models:
        raise BenchError("--replot reads the models from the JSON; give no MODEL with it")
    try:
        results, _, _ = read_results(args.replot)
    except (OSError, ValueError, TypeError) as e:
        raise BenchError(f"cannot read {args.replot}: {e}") from e
    if not results:
        raise BenchError(f"{args.replot} holds no results")
    paths = write_plots(results, args.output)
    print(format_table(results))
    if not args.quiet:
        print(f"acir-bench: wrote {', '.join(paths)}", file=sys.stderr)
    return 0


def _body(args) -> int:
    from dataclasses import asdict

    from acir import progress
    from acir.bench.driver import describe_machine, run, stderr_log
    from acir.bench.results import format_table, write_results
    from acir.errors import AcirError, BenchError
    from acir.runtime.measure import use_malloc

    progress.set_quiet(args.quiet)
    if args.replot:
        return _replot(args)
    if not args.models:
        raise BenchError("no model given; e.g. acir-bench resnet18 -b 4,8 (acir-capture --list-models lists them)")
    opts = _options(args)
    log = stderr_log(args.quiet)
    if opts.device == "cpu":
        # a command has re-executed itself with GLIBC_TUNABLES already; called in-process (main(argv)), the
        # heap is kept with mallopt instead (acir.runtime.measure), and --malloc default refuses a kept heap
        try:
            use_malloc(args.malloc)
        except AcirError as e:
            raise BenchError(f"--malloc {args.malloc}: {e}") from None
    os.makedirs(args.output, exist_ok=True)
    machine = describe_machine(opts.device)
    log(f"{machine['cpu']}, {machine['cpus_usable']} CPUs, torch {machine['torch']} ({machine['torch_threads']} "
        f"threads), malloc {machine['malloc']}, device {opts.device}")
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(opts).items()}
    settings["command"] = " ".join(["acir-bench", *sys.argv[1:]]) if args.argv_is_cli else ""
    prior = _prior_results(args.output, settings) if args.resume else []
    # written after every model and batch size, so that a long run stopped midway keeps what it measured
    results = run(opts, log, done=lambda rs: write_results(rs, machine, settings, args.output), prior=prior)
    paths = write_results(results, machine, settings, args.output)
    if not args.no_plots:
        from acir.bench.plots import write_plots

        paths += write_plots(results, args.output)
    print(format_table(results))
    log(f"wrote {', '.join(paths)}")
    failed = sum(1 for r in results if not r.ok)
    if failed:
        log(f"{failed} of {len(results)} configurations failed (see the reason column)")
    return 0


#: Settings that do not change what is measured: a run may be resumed with others.
_RESUMABLE = ("command", "models", "batch_sizes")


def _prior_results(outdir: str, settings: dict) -> list:
    """The results an earlier run wrote to ``outdir``, for ``--resume``; its settings must be these
    (models and batch sizes aside), or its figures would not compare with the new ones."""
    from acir.bench.results import read_results
    from acir.errors import BenchError

    path = os.path.join(outdir, "results.json")
    if not os.path.exists(path):
        return []  # nothing to resume: a first run
    try:
        results, _, old = read_results(path)
    except (OSError, ValueError, TypeError) as e:
        raise BenchError(f"--resume: cannot read {path}: {e}") from e
    differ = sorted(k for k in set(old) | set(settings)
                    if k not in _RESUMABLE and old.get(k) != settings.get(k))
    if differ:
        shown = ", ".join(f"{k} (was {old.get(k)!r}, now {settings.get(k)!r})" for k in differ[:4])
        raise BenchError(f"--resume: {path} was measured with other settings: {shown}; "
                         "run with the same options, or write to another -o folder")
    return results


def _reexec_with_heap_retained(argv: list[str]) -> None:
    """Start again with glibc keeping freed memory (GLIBC_TUNABLES is read only at process start)."""
    from acir.runtime.measure import HEAP_RETAINED

    env = dict(os.environ)
    old = env.get("GLIBC_TUNABLES", "")
    env["GLIBC_TUNABLES"] = f"{old}:{HEAP_RETAINED}" if old else HEAP_RETAINED
    env["ACIR_BENCH_REEXEC"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "acir.tools.bench", *argv], env)


def main(argv: list[str] | None = None) -> int:
    """The command; from a real command line (``argv`` None) it re-executes itself for the malloc setting."""
    parser = _parser()
    cli = argv is None
    if cli:
        from acir.runtime.measure import malloc_setting

        args = parser.parse_args()  # bad options and --help end here, before any re-execution
        if (args.device == "cpu" and args.malloc == "heap-retained" and not args.replot
                and malloc_setting() != "heap-retained"
                and os.environ.get("ACIR_BENCH_REEXEC") != "1"):
            _reexec_with_heap_retained(sys.argv[1:])
    parser.set_defaults(argv_is_cli=cli)
    return run_cli("acir-bench", parser, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
