"""acir-opt as a user meets it: in-process ``main([...])`` with files, plus one real subprocess."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ir_fixtures import small_module

from acir.ir.graph import Module
from acir.ir.serde import dumps, loads
from acir.ir.text import parse_module
from acir.pipeline import registry
from acir.pipeline.pass_base import Pass, PassResult
from acir.tools.opt import main


@dataclass(frozen=True)
class Relabel(Pass):
    """Change the module path of node 0."""

    name = "relabel"
    label: str = field(default="relabelled", metadata={"help": "the new module path"})

    def run(self, module: Module) -> PassResult:
        module.graph.nodes[0].module = self.label
        return PassResult(True)


@dataclass(frozen=True)
class Crash(Pass):
    """Fail with a plain Python error."""

    name = "crash"

    def run(self, module: Module) -> PassResult:
        raise ZeroDivisionError("division by zero")


@pytest.fixture
def test_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (Relabel, Crash):
        monkeypatch.setitem(registry.PASSES, cls.name, f"{__name__}:{cls.__name__}")


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "step.acir"
    path.write_bytes(dumps(small_module()))
    return path


def run_opt(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def assert_clean_error(rc: int, err: str, *words: str) -> None:
    assert rc != 0
    assert err.startswith("acir-opt: error: ") or "\nacir-opt: error: " in err
    assert "Traceback" not in err
    for w in words:
        assert w in err


def test_empty_pipeline_keeps_the_bytes(artifact: Path, tmp_path: Path, capsys) -> None:
    for extra in ([], ["-p", ""], ["-p", "  "]):
        out = tmp_path / "out.acir"
        rc, err = run_opt(capsys, str(artifact), *extra, "-o", str(out))
        assert (rc, err) == (0, "")
        assert out.read_bytes() == artifact.read_bytes()


def test_stdin_to_stdout(artifact: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(artifact.read_bytes())))
    assert main(["-"]) == 0
    assert capsysbinary.readouterr().out == artifact.read_bytes()


def test_text_emit_records_the_pipeline(artifact: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.txt"
    rc, _ = run_opt(capsys, str(artifact), "-p", "dce", "--emit=text", "-o", str(out))
    assert rc == 0
    text = out.read_text()
    assert text.startswith("acir ")
    m = parse_module(text)
    assert m.header.pipeline == small_module().header.pipeline + ["dce"]
    # and the text form is an input too
    again = tmp_path / "again.acir"
    assert run_opt(capsys, str(out), "-o", str(again))[0] == 0
    assert loads(again.read_bytes()).header.pipeline == m.header.pipeline


def test_pass_flags_append_after_the_pipeline(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    out = tmp_path / "out.acir"
    rc, _ = run_opt(capsys, str(artifact), "-p", "relabel", "--pass", "dce", "--pass", "relabel{label=z}",
                    "-o", str(out))
    assert rc == 0
    m = loads(out.read_bytes())
    assert m.header.pipeline[-3:] == ["relabel", "dce", "relabel{label=z}"]
    assert m.header.revision == small_module().header.revision + 2
    assert m.graph.nodes[0].module == "z"


def test_unknown_pass_fails_before_reading_input(capsys) -> None:
    rc, err = run_opt(capsys, "/no/such/file.acir", "-p", "dce,mutow")
    assert_clean_error(rc, err, "unknown pass 'mutow'", "known passes:", "--list-passes")


def test_malformed_pipeline(artifact: Path, capsys) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "dce{")
    assert_clean_error(rc, err, "pipeline: expected an option name at column 5")


def test_unknown_option(artifact: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "relabel{lable=x}")
    assert_clean_error(rc, err, "pass 'relabel' has no option 'lable'", "label (str): the new module path")


def test_garbage_input(tmp_path: Path, capsys) -> None:
    path = tmp_path / "garbage.acir"
    path.write_bytes(random.Random(0).randbytes(4096))
    rc, err = run_opt(capsys, str(path), "-p", "dce")
    assert_clean_error(rc, err, "not an acir artifact")


def test_truncated_input(artifact: Path, tmp_path: Path, capsys) -> None:
    data = artifact.read_bytes()
    for cut in (len(data) // 2, len(data) - 3):
        path = tmp_path / "cut.acir"
        path.write_bytes(data[:cut])
        rc, err = run_opt(capsys, str(path), "-p", "dce")
        assert_clean_error(rc, err, "truncated")


def test_missing_and_empty_input(tmp_path: Path, capsys) -> None:
    rc, err = run_opt(capsys, str(tmp_path / "nope.acir"))
    assert_clean_error(rc, err, "cannot read")
    (tmp_path / "empty.acir").write_bytes(b"")
    rc, err = run_opt(capsys, str(tmp_path / "empty.acir"))
    assert_clean_error(rc, err, "empty input")


def test_list_passes_needs_no_input(capsys, test_passes) -> None:
    rc = main(["--list-passes"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "dce\n    Remove nodes whose outputs are never used" in out
    assert "    label: str (default 'relabelled')  the new module path" in out
    assert "requires: -" in out


def test_help_teaches(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "acir-capture resnet18 -b 2 | acir-opt -p 'dce' --emit=text | head" in out
    assert "--reproducer" in out and "--list-passes" in out and "examples:" in out


def test_failing_pass_writes_a_reproducer(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    repro = tmp_path / "repro.acir.txt"
    rc, err = run_opt(capsys, str(artifact), "-p", "relabel,crash,dce", "--reproducer", str(repro))
    assert_clean_error(rc, err, "pass 'crash' failed: ZeroDivisionError: division by zero")
    first, rest = repro.read_text().split("\n", 1)
    assert first == f"# reproduce: acir-opt {repro} -p 'crash,dce'"
    assert f"wrote the IR from before 'crash' to {repro}" in err
    before = parse_module(rest)
    assert before.graph.nodes[0].module == "relabelled"
    assert before.header.pipeline[-1] == "relabel"


def test_reproducer_file_replays(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    repro = tmp_path / "repro.acir.txt"
    run_opt(capsys, str(artifact), "-p", "relabel,crash", "--reproducer", str(repro))
    rc, err = run_opt(capsys, str(repro), "-p", "crash")
    assert_clean_error(rc, err, "pass 'crash' failed")


def test_unwritable_reproducer_keeps_the_real_error(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "crash", "--reproducer", str(tmp_path / "no" / "dir" / "r"))
    assert_clean_error(rc, err, "cannot write the reproducer", "pass 'crash' failed")


def test_failing_pass_without_reproducer_says_how_to_get_one(artifact: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "crash")
    assert_clean_error(rc, err, "--reproducer FILE")


def test_traceback_flag(artifact: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "crash", "--traceback")
    assert rc == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_print_ir_after_all_and_time_passes(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "relabel,dce", "--print-ir-after-all", "--time-passes",
                      "-o", str(tmp_path / "o.acir"))
    assert rc == 0
    assert "// -----// IR after relabel //----- //\nacir " in err
    assert "// -----// IR after dce //----- //" in err
    assert "Total Execution Time:" in err


def test_print_ir_after_change_only(artifact: Path, tmp_path: Path, capsys, test_passes) -> None:
    rc, err = run_opt(capsys, str(artifact), "-p", "relabel,dce", "--print-ir-after-change",
                      "-o", str(tmp_path / "o.acir"))
    assert rc == 0
    assert "IR after relabel" in err and "IR after dce" not in err


def test_verify_and_no_verify(tmp_path: Path, capsys) -> None:
    m = small_module()
    m.graph.outputs.append(424242)
    path = tmp_path / "bad.acir"
    path.write_bytes(dumps(m))
    rc, err = run_opt(capsys, str(path), "-o", str(tmp_path / "o.acir"))
    assert_clean_error(rc, err, "the input, before any pass:", "v424242")
    rc, _ = run_opt(capsys, str(path), "--no-verify", "-o", str(tmp_path / "o.acir"))
    assert rc == 0


def test_installed_console_script_reports_without_traceback(artifact: Path) -> None:
    exe = Path(sys.executable).with_name("acir-opt")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    proc = subprocess.run([str(exe), str(artifact), "-p", "no-such-pass"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("acir-opt: error: unknown pass 'no-such-pass'")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_rewritten_step_over_its_plans_budget_is_warned_about(tmp_path, capsys):
    """acir-opt runs a pipeline as written (acir.compile plans again instead): when the rewritten
    step's simulated peak is over the budget (on a sharded step, a replay can keep a gathered
    parameter alive that the plan did not price), it says so on stderr."""
    import copy

    from acir.api import CaptureOptions, capture
    from acir.ir.analyses import LIVENESS, PLAN
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline
    from acir.tools.opt import _warn_over_budget

    m = capture(CaptureOptions("mlp", batch_size=4))
    PassManager(build_pipeline("profile{method=analytic},liveness,recompute-all{budget=90%},rewrite")).run(m)
    live, plan = m.analyses[LIVENESS], m.analyses[PLAN]
    assert live.revision != plan.revision
    ok = copy.deepcopy(m)
    ok.analyses[PLAN].budget_bytes = live.simulated_peak_bytes
    _warn_over_budget(ok)
    assert capsys.readouterr().err == ""
    m.analyses[PLAN].budget_bytes = live.simulated_peak_bytes - 1
    _warn_over_budget(m)
    err = capsys.readouterr().err
    assert err.startswith("acir-opt: warning: the rewritten step's simulated peak") and "over the plan's budget" in err
