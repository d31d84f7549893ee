"""Progress bars: on stderr only when it is a terminal and not -q, never in what a tool writes for machines."""

from __future__ import annotations

import contextlib
import copy
import io
import sys
from typing import Iterator

from conftest import cli

from acir import progress

BAR_MARKS = ("\r", "\x1b[", "█", "it/s", "node/s")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def terminal() -> Iterator[FakeTTY]:
    """stderr as a terminal that records what is drawn on it (set in the test's body: pytest's own
    capture puts its stream back between a fixture's setup and the test)."""
    saved, fake = sys.stderr, FakeTTY()
    sys.stderr = fake
    progress.set_quiet(False)
    try:
        yield fake
    finally:
        sys.stderr = saved
        progress.set_quiet(False)


def _no_bars(text: str) -> None:
    assert not [m for m in BAR_MARKS if m in text], text[-2000:]


def test_the_policy(monkeypatch):
    with terminal():
        assert progress.enabled()
        progress.set_quiet(True)
        assert not progress.enabled() and progress.quiet()
    piped = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", piped)
    assert not progress.enabled()
    with progress.bar("nothing", total=3) as b:  # a disabled bar takes every call and draws nothing
        b.update(3)
        b.set_description_str("still nothing")
    assert piped.getvalue() == ""


def test_bars_draw_on_a_terminal_and_not_when_quiet(captured):
    """In-process, with stderr a (fake) terminal: the profile pass draws its bar; -q silences it."""
    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    module = captured("mlp")
    with terminal() as tty:
        PassManager(build_pipeline("profile{method=analytic}")).run(copy.deepcopy(module))
    drawn = tty.getvalue()
    assert "\r" in drawn and "profile: analytic" in drawn
    with terminal() as tty:
        progress.set_quiet(True)
        PassManager(build_pipeline("profile{method=analytic}")).run(copy.deepcopy(module))
    assert tty.getvalue() == ""


def test_the_milp_shows_its_time_limit():
    from test_optimal import chain_module

    from acir.pipeline.manager import PassManager
    from acir.pipeline.registry import build_pipeline

    with terminal() as tty:
        # at 215000 the cover bound's plan does not fit (test_optimal), so the MILP runs, with its bar
        PassManager(build_pipeline("liveness,optimal{budget=215000,time-limit=5}")).run(chain_module())
    drawn = tty.getvalue()
    assert "optimal: round 1" in drawn and "s time limit" in drawn


def test_capture_phases_on_a_terminal(tmp_path):
    from acir.tools.capture import main

    with terminal() as tty:
        assert main(["mlp", "-o", str(tmp_path / "mlp.acir")]) == 0
    drawn = tty.getvalue()
    assert "acir-capture mlp batch 2: build and trace the step" in drawn and "(0/3 phases)" in drawn
    assert "\r" in drawn
    assert drawn.rstrip().splitlines()[-1].startswith("acir-capture: mlp batch 2:")  # the summary, after the bar


def test_no_bars_when_piped(tmp_path, captured):
    """A CLI whose stderr is a pipe draws nothing: no carriage returns, no bar characters; stdout stays clean."""
    from acir.ir.serde import dumps

    art = tmp_path / "mlp.acir"
    art.write_bytes(dumps(captured("mlp")))
    r = cli("acir-opt", str(art), "-p", "profile{reps=1,warmup=0},liveness", "--emit=text")
    assert r.returncode == 0, r.stderr.decode()
    _no_bars(r.stderr.decode())
    assert r.stdout.decode().startswith("acir 1 ")  # the artifact, and nothing else, on stdout
