"""Shared fixtures: captures of the tiny models, made once per test session."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings

# Property tests are deterministic in the suite (CI must not depend on luck); run
# `HYPOTHESIS_PROFILE=explore make test` to search with fresh random examples.
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_MODEL = os.path.join(ROOT, "examples", "user_model.py")

# (spec, batch, seq_len, image_size) of the tiny models every capture test runs on
TINY = {
    "mlp": ("mlp", 2, 0, 0),
    "resnet18": ("resnet18", 2, 0, 32),
    "bert-tiny": ("bert-tiny", 2, 16, 0),
    "gpt2-tiny": ("gpt2-tiny", 2, 16, 0),
    "user": (USER_MODEL + ":make", 4, 0, 0),
}


@pytest.fixture(scope="session")
def captured():
    """name -> Module, captured lazily once per session."""
    from acir.api import CaptureOptions, capture

    cache: dict = {}

    def get(name: str, optimizer: str = "adam"):
        key = (name, optimizer)
        if key not in cache:
            spec, b, s, i = TINY[name]
            cache[key] = capture(CaptureOptions(spec, b, s, i, optimizer=optimizer))
        return cache[key]

    return get


def cli(tool: str, *args: str, stdin: bytes | None = None, cwd: str | None = None):
    """Run an installed console script; returns CompletedProcess with bytes stdout/stderr."""
    import subprocess

    exe = os.path.join(os.path.dirname(sys.executable), tool)
    return subprocess.run([exe, *args], input=stdin, capture_output=True, cwd=cwd, timeout=600)
