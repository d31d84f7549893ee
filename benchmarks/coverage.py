"""Coverage: does every public architecture go through acir, bit-identical and within its budget?

Not a test. For each model — every torchvision classification model
(``torchvision.models.list_models(module=torchvision.models)``, random weights, a small
image and batch) and a set of transformers architectures built from small configs (encoder,
decoder and encoder-decoder language models, vision transformers) — it runs, in a
process of its own (forked from the driver, which imports torch once) with a time limit:

    capture -> check (bit-identical to eager?) -> profile, liveness (no-AC peak)
    -> mutwo at 60% (or at the floor the error states, where 60% is below it) -> rewrite
    -> check again, and measure the rewritten step's peak against the budget

and writes one row per model (``results.json``, ``results.md``) after every model, so a
run that is stopped resumes where it was (``--fresh`` starts over, ``--retry`` re-runs the
rows that did not pass). One failing model never stops the run: its row says at which
stage and why.

    nice .venv/bin/python benchmarks/coverage.py -o out/coverage               # everything
    .venv/bin/python benchmarks/coverage.py --models resnet18,hf-t5 --timeout 300
    .venv/bin/python benchmarks/coverage.py --family transformers --list

The models are this file's factories, so each is an ordinary user model spec that
``acir-capture`` and ``acir-run`` take too: ``benchmarks/coverage.py:tv_resnet18``,
``benchmarks/coverage.py:hf_t5`` (``make(batch_size) -> (model, batch, loss_fn)``, the
sizes fixed in this file: :data:`IMAGE_SIZE`, :data:`SEQ_LEN`).

Each stage that needs the live model works on deep copies of one build (rebuilding a
large model from its seed takes longer than copying it). The check compares with eager
PyTorch through :func:`acir.runtime.check.check_against_eager`, as ``acir-run --check``
does; the peak is :func:`acir.runtime.measure.measure_peak`, as ``acir-run --measure``
reports it (live tensor storages, each once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, Callable

HERE = os.path.abspath(__file__)

#: Image side for torchvision models (batch 2), and the exceptions: a model that needs more.
IMAGE_SIZE = 64
MIN_IMAGE_SIZE = {
    "inception_v3": 299,   # the auxiliary classifier needs Mixed_6e at 17x17
    "maxvit_t": 224,       # every stage's grid must divide by the partition size 7
    "vit_h_14": 56,        # patches of 14 must tile the image
}
#: Sequence length and image side (patch 8) for the transformers models.
SEQ_LEN = 32
HF_IMAGE_SIZE = 32
VOCAB = 1000
BATCH_SIZE = 2

# ---------------------------------------------------------------------------------------
# The models: factories ``make(batch_size) -> (model, batch, loss_fn)``


def _classification_loss(model, batch):
    """Cross-entropy on the logits; models with auxiliary heads in training (GoogLeNet,
    Inception v3) add theirs at 0.3, as their papers train them."""
    import torch.nn.functional as F

    x, y = batch
    out = model(x)
    if isinstance(out, tuple):  # GoogLeNetOutputs / InceptionOutputs: (logits, aux...)
        logits, *aux = out
        return F.cross_entropy(logits, y) + sum(0.3 * F.cross_entropy(a, y) for a in aux if a is not None)
    return F.cross_entropy(out, y)


def torchvision_models() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def image_size(name: str) -> int:
    return MIN_IMAGE_SIZE.get(name, IMAGE_SIZE)


def _torchvision(name: str) -> Callable[[int], tuple]:
    def make(batch_size: int):
        import torch
        import torchvision

        size = image_size(name)
        kwargs: dict[str, Any] = {}
        if name.startswith("vit_"):
            kwargs["image_size"] = size
        if name.startswith("maxvit"):
            kwargs["input_size"] = (size, size)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        batch = (torch.randn(batch_size, 3, size, size), torch.randint(0, 1000, (batch_size,)))
        return model, batch, _classification_loss

    make.__name__ = f"tv_{name}"
    return make


def _hf_loss(model, batch):
    return model(**batch).loss


#: name -> (config class, model class, task, config keywords): small configs, 2 layers.
_TEXT = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
             max_position_embeddings=128)
_VISION = dict(image_size=HF_IMAGE_SIZE, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=128, num_labels=10)
HF_MODELS: dict[str, tuple[str, str, str, dict]] = {
    "bert": ("BertConfig", "BertForMaskedLM", "mlm", _TEXT),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", "mlm", _TEXT),
    "distilbert": ("DistilBertConfig", "DistilBertForMaskedLM", "mlm",
                   dict(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=128)),
    "albert": ("AlbertConfig", "AlbertForMaskedLM", "mlm", dict(_TEXT, embedding_size=32)),
    "electra": ("ElectraConfig", "ElectraForMaskedLM", "mlm", dict(_TEXT, embedding_size=64)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", "clm", dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=2,
                                                          n_positions=128)),
    "gpt-neo": ("GPTNeoConfig", "GPTNeoForCausalLM", "clm",
                dict(vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                     attention_types=[[["global", "local"], 1]], max_position_embeddings=128, window_size=16)),
    "opt": ("OPTConfig", "OPTForCausalLM", "clm",
            dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=2,
                 max_position_embeddings=128, word_embed_proj_dim=64)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", "clm", dict(_TEXT, num_key_value_heads=1)),
    "mistral": ("MistralConfig", "MistralForCausalLM", "clm", dict(_TEXT, num_key_value_heads=1, sliding_window=16)),
    "t5": ("T5Config", "T5ForConditionalGeneration", "seq2seq",
           dict(vocab_size=VOCAB, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2,
                decoder_start_token_id=0, pad_token_id=0)),
    "bart": ("BartConfig", "BartForConditionalGeneration", "seq2seq",
             dict(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128)),
    "vit": ("ViTConfig", "ViTForImageClassification", "image", _VISION),
    "deit": ("DeiTConfig", "DeiTForImageClassification", "image", _VISION),
    "swin": ("SwinConfig", "SwinForImageClassification", "image",
             dict(image_size=HF_IMAGE_SIZE, patch_size=4, num_channels=3, embed_dim=32, depths=[1, 1],
                  num_heads=[2, 2], window_size=4, num_labels=10)),
}


def _transformers(name: str) -> Callable[[int], tuple]:
    config_cls, model_cls, task, kwargs = HF_MODELS[name]

    def make(batch_size: int):
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        config = getattr(transformers, config_cls)(**kwargs)
        model = getattr(transformers, model_cls)(config)
        if task == "image":
            batch = {"pixel_values": torch.randn(batch_size, 3, HF_IMAGE_SIZE, HF_IMAGE_SIZE),
                     "labels": torch.randint(0, kwargs["num_labels"], (batch_size,))}
        else:
            ids = torch.randint(1, VOCAB, (batch_size, SEQ_LEN))
            labels = ids.clone() if task == "clm" else torch.randint(1, VOCAB, (batch_size, SEQ_LEN))
            batch = {"input_ids": ids, "attention_mask": torch.ones(batch_size, SEQ_LEN, dtype=torch.int64),
                     "labels": labels}
        return model, batch, _hf_loss

    make.__name__ = f"hf_{name}"
    return make


def families() -> dict[str, list[str]]:
    """Row names by family: torchvision names as torchvision spells them, transformers ones ``hf-NAME``."""
    return {"torchvision": torchvision_models(), "transformers": [f"hf-{n}" for n in HF_MODELS]}


def spec(name: str) -> str:
    """The model spec acir takes for row ``name``: this file and its factory."""
    if name.startswith("hf-"):
        return f"{HERE}:hf_{name.removeprefix('hf-').replace('-', '_')}"
    return f"{HERE}:tv_{name}"


def __getattr__(attr: str):
    """``tv_<torchvision name>`` and ``hf_<name>``: the factories, made on demand (PEP 562)."""
    if attr.startswith("tv_"):
        return _torchvision(attr.removeprefix("tv_"))
    if attr.startswith("hf_"):
        name = attr.removeprefix("hf_").replace("_", "-")
        if name in HF_MODELS:
            return _transformers(name)
    raise AttributeError(attr)


# ---------------------------------------------------------------------------------------
# One model, in its own process: every stage, the row written after each


def _error(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _compare(ref: tuple, ref_loss, model, opt, loss):
    """Like ``acir-run --check``: the loss and every parameter, buffer and optimizer-state tensor
    after the step, against the eager step's (``ref``: its model and optimizer), bit for bit."""
    import math

    from acir.runtime.check import CheckReport, Difference, compare_states

    a, b = float(ref_loss), float(loss)
    loss_diff = 0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b)
    diffs = [Difference("loss", loss_diff, int(loss_diff != 0), 1)] + compare_states(ref[0], ref[1], model, opt)
    worst = sorted((d for d in diffs if d.mismatched), key=lambda d: -d.max_abs_diff)
    return CheckReport(max(d.max_abs_diff for d in diffs), len(diffs), a, b, worst)


def _profile(module, model, opt, batch):
    """The ``profile`` block as ``profile{reps=1,warmup=0}`` makes it, less the iteration's own
    timing (two more steps; here the iteration time is the sum of the node times)."""
    import torch

    from acir.ir import analyses
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import malloc_setting
    from acir.runtime.node_runner import NodeRunner, memory_by_node, time_nodes

    step = BoundStep(module, model, opt)
    runner = NodeRunner(module)
    times = time_nodes(runner, lambda: step.inputs(batch), 1, 0)
    memory, peak = memory_by_node(runner, step.inputs(batch))
    nodes = module.graph.nodes
    profiles = [analyses.NodeProfile(n.id, t[0], m.alloc_bytes, m.freed_bytes, m.peak_bytes, m.live_bytes)
                for n, t, m in zip(nodes, times, memory)]
    peak_rank = max(range(len(nodes)), key=lambda r: memory[r].peak_bytes)
    return analyses.Profile(revision=module.header.revision, device="cpu", method="perf_counter", reps=1, warmup=0,
                            torch_version=torch.__version__, malloc=malloc_setting(), nodes=profiles,
                            measured_peak_bytes=peak, peak_node=nodes[peak_rank].id,
                            iteration_s=sum(t[0] for t in times))


def run_one(name: str, row_path: str, budget: str, optimizer: str) -> None:
    """Run the stages on ``name`` and keep ``row_path`` up to date (a timeout leaves what was done).

    One eager step from the seed's state is the reference both checks compare with; the
    rewritten step's check runs under the live-storage tracker, which measures its peak."""
    import copy

    import torch

    from acir.api import CaptureOptions, capture
    from acir.errors import InfeasibleBudget
    from acir.frontend.optim import eager_step
    from acir.frontend.rebuild import rebuild
    from acir.frontend.step import real_build
    from acir.ir import analyses
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline
    from acir.runtime.lower import BoundStep
    from acir.runtime.measure import measure_peak

    row: dict[str, Any] = {"name": name, "stage": "capture", "status": "running"}
    t_start = time.perf_counter()
    stage_t = [time.perf_counter()]

    def save(**kw) -> None:
        now = time.perf_counter()
        if "stage" in kw and kw["stage"] != row["stage"]:  # the stage that ends now: its time
            row.setdefault("stage_s", {})[row["stage"]] = round(now - stage_t[0], 1)
            stage_t[0] = now
        row.update(kw, seconds=round(now - t_start, 1))
        tmp = row_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(row, f)
        os.replace(tmp, row_path)

    save()
    module = capture(CaptureOptions(spec(name), BATCH_SIZE, optimizer=optimizer))
    built = real_build(module)
    save(nodes=len(module.graph.nodes), capture_s=round(time.perf_counter() - t_start, 1),
         real_build_bytes=built[0] if built else 0, stage="check")

    pristine = rebuild(module.header.provenance)
    save(params=sum(p.numel() for p in pristine[0].parameters()))

    def fresh():
        return copy.deepcopy(pristine)

    ref = fresh()
    torch.manual_seed(1234)
    ref_loss = eager_step(ref[0], ref[1], ref[2], ref[3])
    model, opt, _, batch = fresh()
    torch.manual_seed(1234)
    report = _compare(ref, ref_loss, model, opt, BoundStep(module, model, opt)(batch))
    del model, opt, batch
    save(check=report.ok, stage="profile")
    if not report.ok:
        save(status="mismatch", reason=report.summary(3).replace("\n", " "))
        return

    model, opt, _, batch = fresh()
    module.analyses[analyses.PROFILE] = _profile(module, model, opt, batch)
    del model, opt, batch
    PassManager(build_pipeline("liveness")).run(module)
    prof = module.analyses[analyses.PROFILE]
    save(no_ac_peak=prof.measured_peak_bytes, no_ac_simulated=module.analyses[analyses.LIVENESS].simulated_peak_bytes,
         stage="plan")

    planned = copy.deepcopy(module)
    try:
        PassManager(build_pipeline(f"mutwo{{budget={budget}}}")).run(planned)
        budget_kind = budget
    except InfeasibleBudget as e:  # below the floor: plan at the floor the error states
        planned = copy.deepcopy(module)
        PassManager(build_pipeline(f"mutwo{{budget={e.floor_bytes}}}")).run(planned)
        budget_kind = "floor"
    plan = planned.analyses[analyses.PLAN]
    save(budget=plan.budget_bytes, budget_kind=budget_kind, predicted=plan.predicted_peak_bytes,
         recomputed=len(plan.recomputed()), stage="rewrite")
    PassManager(build_pipeline("rewrite")).run(planned)
    del module
    save(nodes_rewritten=len(planned.graph.nodes), stage="check-rewritten")

    model, opt, _, batch = fresh()
    pristine = None  # the last copy is made: free the build
    step = BoundStep(planned, model, opt)
    out = []
    torch.manual_seed(1234)
    peak = measure_peak(lambda: out.append(step(batch)), step.inputs(batch))
    report2 = _compare(ref, ref_loss, model, opt, out[0])
    within = peak <= plan.budget_bytes
    reasons = []
    if not report2.ok:
        reasons.append(report2.summary(3).replace("\n", " "))
    if not within:
        reasons.append(f"measured peak {peak} B is {peak - plan.budget_bytes} B over the budget "
                       f"(plan predicted {plan.predicted_peak_bytes} B)")
    save(check_rewritten=report2.ok, measured=peak, within=within, stage="done",
         status="ok" if report2.ok and within else "failed", reason="; ".join(reasons))


# ---------------------------------------------------------------------------------------
# The driver: a forked process per model, results after each


def _load(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


#: Optimizer state tensors per parameter, for the memory estimate.
STATES = {"sgd": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "radam": 2}


def bytes_per_param(optimizer: str) -> int:
    """Bytes per float32 parameter the run holds at most: the build every stage copies, then the
    eager reference step's model and the copy a stage runs, each with gradients and state."""
    return 4 + 2 * 4 * (2 + STATES.get(optimizer, 2))


def known_params(name: str) -> int:
    """The parameter count torchvision's weights metadata states (0 when it states none)."""
    if name.startswith("hf-"):
        return 0
    import torchvision

    try:
        return int(torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"])
    except Exception:
        return 0


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f}
    return info.get("MemAvailable", 0)


def _too_big(name: str, optimizer: str) -> str | None:
    """Why the model does not fit this machine's free memory now, or None."""
    need = known_params(name) * bytes_per_param(optimizer)
    free = available_bytes()
    if need > 0.8 * free:
        return (f"not run: {known_params(name) / 1e6:.0f}M parameters need about {need / 2**30:.1f} GiB here (the "
                f"build, the eager reference step and the step being checked, each with gradients and {optimizer} "
                f"state), and {free / 2**30:.1f} GiB is available")
    return None


def preload() -> None:
    """Import what every model needs once, in the driver, so that each forked child starts at
    once (a fresh interpreter spends seconds importing torch, torchvision and acir). No tensor
    op runs here: a child must start with no thread pool of its parent's."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import transformers  # noqa: F401

    import acir.api  # noqa: F401
    import acir.frontend.rebuild  # noqa: F401
    import acir.pipeline.registry  # noqa: F401
    import acir.runtime.lower  # noqa: F401
    import acir.runtime.measure  # noqa: F401
    import acir.runtime.node_runner  # noqa: F401
    from acir.passes import profile  # noqa: F401


def _child(name: str, row_path: str, log_path: str, budget: str, optimizer: str, threads: int) -> None:
    """In the forked child: the log as stdout and stderr, then the stages; never returns."""
    import traceback

    code = 0
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.setsid()  # its own process group: a timeout kills whatever it started too
        import torch

        torch.set_num_threads(threads)
        run_one(name, row_path, budget, optimizer)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_child(name: str, out: str, timeout: float, budget: str, optimizer: str, threads: int) -> dict:
    """Run ``name`` in a forked child within ``timeout``; its row, with how it ended."""
    row_path = os.path.join(out, "rows", f"{name}.json")
    os.makedirs(os.path.dirname(row_path), exist_ok=True)
    if os.path.exists(row_path):
        os.remove(row_path)
    log_path = os.path.join(out, "logs", f"{name}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(name, row_path, log_path, budget, optimizer, threads)
    rc = None
    while time.perf_counter() - t0 < timeout:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.5)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    row = _load(row_path) or {"name": name, "stage": "start"}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    if rc is None:
        row.update(status="timeout", reason=f"over {timeout:.0f} s, in {row.get('stage')}")
    elif row.get("status") in (None, "running"):
        row.update(status="error", reason=_last_error(log_path, rc, row.get("stage", "start")))
    return row


def _last_error(log_path: str, rc: int, stage: str) -> str:
    """The exception line a crashed child left in its log (or how it died)."""
    if rc < 0:
        what = "killed (out of memory?)" if -rc == signal.SIGKILL else f"killed by signal {-rc}"
        return f"{stage}: {what}"
    with open(log_path, errors="replace") as f:
        lines = [ln.rstrip() for ln in f if ln.strip()]
    errors = [ln for ln in lines if not ln.startswith((" ", "Traceback", "During handling", "The above exception"))
              and ("Error" in ln or "Exception" in ln or ln.startswith("acir"))]
    last = errors[-1] if errors else (lines[-1] if lines else f"exit status {rc}")
    return f"{stage}: {' '.join(last.split())[:400]}"


def _mib(b) -> str:
    return f"{b / 2**20:.1f}" if isinstance(b, (int, float)) and b else "-"


def _yes(v) -> str:
    return "-" if v is None else ("yes" if v else "NO")


def table(rows: list[dict]) -> str:
    """The results as a markdown table, one row per model."""
    head = ("| model | nodes | capture s | check | no-AC peak MiB | budget MiB | measured MiB | within | total s "
            "| status |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        budget = _mib(r.get("budget"))
        if r.get("budget_kind") == "floor":
            budget += " (floor)"
        checks = _yes(r.get("check")) if "check_rewritten" not in r else \
            f"{_yes(r.get('check'))} / {_yes(r.get('check_rewritten'))}"
        status = r.get("status", "?")
        if r.get("real_build_bytes"):
            status += f" (built for real: {_mib(r['real_build_bytes'])} MiB)"
        if r.get("reason"):
            status += f": {r['reason']}"
        cells = [r["name"], str(r.get("nodes", "-")), str(r.get("capture_s", "-")), checks, _mib(r.get("no_ac_peak")),
                 budget, _mib(r.get("measured")), _yes(r.get("within")), str(r.get("seconds", "-")),
                 status.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    ok = [r for r in rows if r.get("status") == "ok"]
    real = [r for r in rows if r.get("real_build_bytes")]
    return (f"{len(ok)} of {len(rows)} models pass (captured, bit-identical before and after the rewrite, measured "
            f"within the budget); {len(real)} built for real; "
            f"{sum(r.get('seconds') or 0 for r in rows) / 60:.1f} min in all")


def _write(out: str, results: dict, order: list[str]) -> None:
    rows = [results[n] for n in order if n in results]
    with open(os.path.join(out, "results.json.tmp"), "w") as f:
        json.dump(results, f, indent=1)
    os.replace(os.path.join(out, "results.json.tmp"), os.path.join(out, "results.json"))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table(rows) + "\n\n" + summary(rows) + "\n")


def select(models: str | None, family: str) -> list[str]:
    fams = families()
    names = [n for f, ns in fams.items() if family in ("all", f) for n in ns]
    if not models:
        return names
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    every = [n for ns in fams.values() for n in ns]
    unknown = [m for m in wanted if m not in every]
    if unknown:
        raise SystemExit(f"coverage: unknown model(s) {', '.join(unknown)}; see --list")
    return wanted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="out/coverage", help="results folder (default out/coverage)")
    p.add_argument("--models", help="comma-separated rows to run (torchvision names, hf-NAME); default: the family")
    p.add_argument("--family", default="all", choices=("all", "torchvision", "transformers"))
    p.add_argument("--timeout", type=float, default=600, help="seconds per model (default 600)")
    p.add_argument("--budget", default="60%", help="the budget to plan for (default 60%%)")
    p.add_argument("--optimizer", default="sgd",
                   help="the optimizer acir-capture builds (default sgd, with momentum: every architecture's update "
                        "is the same per-parameter rule, and SGD's is the cheapest to trace and run)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per model (default 1: on a shared machine more threads than free cores "
                        "spin-wait, several times slower)")
    p.add_argument("--fresh", action="store_true", help="ignore the results already in --out")
    p.add_argument("--retry", action="store_true", help="re-run the rows that did not pass")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--table", action="store_true", help="print the table of --out's results and exit")
    args = p.parse_args(argv)
    names = select(args.models, args.family)
    if args.list:
        print("\n".join(f"{n:24s} {spec(n)}" for n in names))
        return 0
    os.makedirs(args.out, exist_ok=True)
    results = {} if args.fresh else _load(os.path.join(args.out, "results.json"))
    if not args.table:
        preload()
    if args.table:
        rows = [results[n] for n in names if n in results]
        print(table(rows) + "\n\n" + summary(rows))
        return 0
    order = list(dict.fromkeys([*results, *names]))
    for i, name in enumerate(names):
        done = results.get(name)
        if done is not None and (done.get("status") == "ok" or not args.retry):
            continue
        print(f"[{i + 1}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        too_big = _too_big(name, args.optimizer)
        if too_big:
            row = {"name": name, "status": "skipped", "reason": too_big, "seconds": 0.0}
        else:
            row = _run_child(name, args.out, args.timeout, args.budget, args.optimizer, args.threads)
        results[name] = row
        _write(args.out, results, order)
        print(f"    {row.get('status')} in {row.get('seconds')} s {row.get('reason', '')}", file=sys.stderr, flush=True)
    rows = [results[n] for n in names if n in results]
    print(table(rows) + "\n\n" + summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
