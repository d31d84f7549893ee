"""The layers of acir are its folders, and no module imports from a layer above its own.

The order, bottom to top (README, "Architecture"): ``units`` < ``errors`` < ``ir`` <
``pipeline`` < ``analysis`` and ``frontend`` (side by side, neither imports the other) <
``runtime`` < ``passes`` < ``api`` and ``viz`` < ``bench`` < ``tools``. Imports inside a
function count too: a lazy import is still a dependency. ``from acir import __version__``
is allowed everywhere (the package root defines nothing else eagerly).
"""

from __future__ import annotations

import ast
import os

from conftest import ROOT

RANK = {"units": -1, "progress": -1, "errors": 0, "ir": 1, "pipeline": 2, "analysis": 3, "frontend": 3, "runtime": 4,
        "passes": 5, "api": 6, "viz": 6, "bench": 7, "tools": 8}


def _layer_of_path(rel: str) -> str:
    parts = rel.split(os.sep)
    if parts[0] in ("passes", "tools"):
        return parts[0]
    return parts[1].removesuffix(".py")


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "acir":
                for a in node.names:
                    if a.name != "__version__":
                        yield node.lineno, f"acir.{a.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name


def test_no_module_imports_from_a_higher_or_sibling_layer():
    bad = []
    for folder in ("acir", "passes", "tools"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            if "_proto" in dirpath or "__pycache__" in dirpath:
                continue
            for f in files:
                if not f.endswith(".py") or (folder == "acir" and dirpath.endswith("acir") and f == "__init__.py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
                me = _layer_of_path(rel)
                assert me in RANK, f"{rel}: a module outside the known layers; add its folder to RANK and the README"
                for line, mod in _imported(ast.parse(open(os.path.join(ROOT, rel)).read())):
                    parts = mod.split(".")
                    if parts[0] != "acir" or len(parts) < 2:
                        continue
                    other = parts[1]
                    if other == me or other not in RANK:
                        continue
                    if RANK[other] >= RANK[me]:
                        bad.append(f"{rel}:{line} ({me}) imports {mod} ({other})")
    assert bad == []


def test_every_folder_of_acir_is_a_known_layer():
    for entry in os.listdir(os.path.join(ROOT, "acir")):
        if entry.startswith(("_", ".")) or entry in ("py.typed",):
            continue
        name = entry.removesuffix(".py")
        assert name in RANK, f"acir/{entry} is in no layer; give it one (tests/test_layers.py, README)"
