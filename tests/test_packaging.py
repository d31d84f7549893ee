"""The wheel installs acir, acir.passes and acir.tools, and no generic top-level packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    ROOT], check=True, capture_output=True, timeout=300)
    (whl,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    return str(out / whl)


def test_wheel_maps_passes_and_tools_under_acir(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"acir"}
    # every module of the repository's three package folders is in the wheel, under acir
    expected = set()
    for folder, prefix in (("acir", "acir"), ("passes", "acir/passes"), ("tools", "acir/tools")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            if "__pycache__" in dirpath:
                continue
            rel = os.path.relpath(dirpath, os.path.join(ROOT, folder))
            for f in files:
                if f.endswith(".py"):
                    expected.add(os.path.normpath(os.path.join(prefix, rel, f)))
    assert expected - set(names) == set()


def test_wheel_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", wheel], check=True, timeout=300,
                   capture_output=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    installed = set(os.listdir(site))
    assert "acir" in installed
    assert "passes" not in installed and "tools" not in installed
    probe = "import acir.passes, acir.tools, acir.ir.graph; import importlib.util as u; " \
            "assert u.find_spec('passes') is None and u.find_spec('tools') is None"
    subprocess.run([str(py), "-c", probe], check=True, timeout=60, cwd=str(tmp_path))
    for tool in ("acir-capture", "acir-opt", "acir-lower", "acir-run"):
        assert (venv / "bin" / tool).exists()
