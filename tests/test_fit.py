"""acir-fit: the largest batch that fits is really within the size when rewritten and run, the next
one really is not (below its floor, or over the overhead limit), and bad sizes are one sentence."""

from __future__ import annotations

import json

import pytest
from conftest import USER_MODEL

USER = USER_MODEL + ":make"   # conv, batch norm, dropout, an in-place op and a view; about 60 KiB per sample
SIZE = 3 * 2 ** 20


@pytest.fixture(scope="module")
def answer():
    """The user model in 3 MiB, the answer rewritten and run (``verify``)."""
    from acir.api import fit

    return fit(USER, "3MiB", multiple_of=8, max_value=256, verify=True)


def _plan_next(model: str, batch: int, memory: int):
    """Capture ``batch`` anew, profile it for real and ask the mutwo pass for ``memory``: the
    planner's own verdict, independent of acir-fit's search."""
    from acir.api import CaptureOptions, capture
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    module = capture(CaptureOptions(model, batch_size=batch))
    PassManager(build_pipeline(f"profile{{reps=1,warmup=0}},liveness,mutwo{{budget={memory}}}")).run(module)
    return module


def test_the_answer_runs_within_the_size_and_the_next_batch_does_not_fit(answer):
    from acir.errors import InfeasibleBudget

    assert answer.found and answer.batch_size % 8 == 0 and not answer.capped
    assert answer.verify is not None and answer.verify["ran"]
    assert answer.verify["measured_peak_bytes"] <= SIZE, answer.verify
    assert answer.predicted_peak_bytes is not None and answer.predicted_peak_bytes <= SIZE
    assert answer.floor_bytes <= answer.predicted_peak_bytes <= answer.no_ac_peak_bytes
    assert answer.no_ac_peak_bytes > SIZE  # the size needs recomputation: the answer has a plan
    nxt = answer.next
    assert nxt is not None and nxt.batch_size == answer.batch_size + 8 and not nxt.fits
    assert nxt.floor_bytes > SIZE and nxt.predicted_peak_bytes is None
    with pytest.raises(InfeasibleBudget):  # the planner itself, on a fresh capture with measured times
        _plan_next(USER, nxt.batch_size, SIZE)
    assert answer.times == "measured" and answer.batch_size in answer.to_dict()["measured"]


def test_rows_are_exact_memory_and_say_where_their_times_come_from(answer):
    rows = {r.batch_size: r for r in answer.rows}
    assert [8, 16, 32] == sorted(rows)[:3]   # doubling from --multiple-of, then bisection
    peaks = [rows[b].no_ac_peak_bytes for b in sorted(rows)]
    assert peaks == sorted(peaks)
    for r in answer.rows:
        assert r.times in ("measured", "predicted") and r.fits == (r.batch_size <= answer.batch_size)
        assert (r.predicted_peak_bytes is None) == (r.floor_bytes > SIZE)
    m = answer.measurements
    assert m and all(x["measured_iteration_s"] > 0 and x["profile_peak_bytes"] <= SIZE for x in m)
    assert answer.profiling["profiled"] == len(m) < answer.profiling["candidates"]


def test_an_overhead_limit_of_zero_recomputes_nothing():
    """At 0% no recomputation is allowed: the answer is the largest batch whose step fits as it is, and
    the next one fits only with recomputation (or not at all). Deterministic: no time decides it."""
    from acir.api import fit

    r = fit(USER, SIZE, max_overhead=0.0, multiple_of=8, max_value=128)
    assert r.found and r.predicted_overhead == 0.0 and r.predicted_recompute_s == 0.0
    assert r.next is not None and not r.next.fits
    assert r.next.floor_bytes > SIZE or (r.next.predicted_overhead or 0) > 0
    assert r.max_overhead == 0.0


def test_a_model_that_fits_any_batch_stops_at_the_cap_and_the_api_fields(capsys):
    import acir
    from acir.tools.fit import main

    r = acir.fit("mlp", "1GiB", max_value=8, measure=False)
    assert r.found and r.capped and r.batch_size == 8 and r.next is None and r.times == "proxy"
    assert main(["mlp", "--memory", "1GiB", "--max-batch", "8", "--no-measure", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("batch_size", "predicted_peak_bytes", "predicted_overhead", "floor_bytes", "no_ac_peak_bytes",
                "memory_bytes", "rows", "measured", "predicted", "capped", "next"):
        assert key in out, key
    assert out["batch_size"] == 8 and out["capped"] and out["measured"] == [] and out["predicted"] == [1, 2, 4, 8]
    assert set(out) >= set(r.to_dict()) - {"elapsed_s"}
    assert main(["mlp", "--memory", "1GiB", "--max-batch", "2", "--no-measure"]) == 0
    text = capsys.readouterr().out
    assert "answer: batch 2" in text and "<- answer" in text and "largest allowed" in text


@pytest.mark.parametrize("argv, code, words", [
    (["--memory", "60%"], 2, "a percentage has nothing to refer to"),
    (["--memory", "0"], 2, "more than 0 bytes"),
    (["--memory", "lots"], 2, "bad memory size"),
    (["--memory", "1GiB", "--max-overhead", "-3"], 2, "--max-overhead"),
    (["--memory", "1GiB", "--max-batch", "0"], 2, "--max-batch must be at least 1"),
    (["--memory", "1GiB", "--search", "seq-len"], 2, "needs a model that has one"),
    (["--memory", "100KiB", "--no-measure"], 1, "nothing fits: even batch 1 needs at least"),
])
def test_bad_inputs_are_one_sentence(argv, code, words, capsys):
    from acir.tools.fit import main

    assert main(["mlp", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("acir-fit: error: ") and words in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_memory_cuda_and_ram(capsys, monkeypatch):
    import importlib

    import torch

    from acir.tools.fit import main

    fit_mod = importlib.import_module("acir.api.memory_sizes")  # what --memory means (fit's memory sizes)

    if not torch.cuda.is_available():
        assert main(["mlp", "--memory", "cuda"]) == 1
        assert "torch sees no CUDA device" in capsys.readouterr().err
    ram = fit_mod.available_ram()
    assert ram is None or ram > 0
    monkeypatch.setattr(fit_mod, "available_ram", lambda: None)
    assert main(["mlp", "--memory", "ram"]) == 1
    assert "cannot be determined" in capsys.readouterr().err
    n, source = fit_mod.resolve_memory("2GiB")
    assert n == 2 * 2 ** 30 and source == "given"


def test_sequence_length_search_on_a_tiny_transformer():
    """bert-tiny at batch 2 in 160 MiB: the longest multiple of 32 up to 64 (two captures); memory only."""
    from acir.api import fit

    r = fit("bert-tiny", "160MiB", search="seq-len", batch_size=2, multiple_of=32, max_value=64, measure=False)
    assert r.search == "seq_len" and r.batch_size == 2 and r.found and r.value == r.seq_len == 64 and r.capped
    assert [(row.batch_size, row.seq_len) for row in r.rows] == [(2, 32), (2, 64)]
    assert r.rows[0].no_ac_peak_bytes < r.rows[1].no_ac_peak_bytes <= 160 * 2 ** 20
    assert r.to_dict()["predicted"] == [32, 64]
