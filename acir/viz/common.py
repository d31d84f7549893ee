"""What ``acir-viz``'s pictures share: output formats and Graphviz.

``acir-viz`` draws the graph (:mod:`acir.viz.dot`), the memory timeline
(:mod:`acir.viz.memory`) and the planners' Pareto curve (:func:`acir.bench.sweep.pareto`). Why DOT is
written by hand rather than through the ``graphviz`` Python package: the text is the
golden file of the tests, so its exact bytes must depend on acir alone (the package has
changed its indentation and quoting between releases), and an 11k-node graph is a few
string joins. Rendering runs Graphviz's ``dot`` binary directly, so that a missing binary
is one clear error that says how to install it, before any input is read.

Errors come in two kinds: :class:`VizUsageError` is a bad option, possibly only found
out against the artifact (a module path with no nodes, ``--memory`` without a liveness
analysis); the CLI exits 2 for it, as for argparse's own errors. :class:`VizError` is
anything else a user can fix (no ``dot``, an unwritable file); the CLI exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from acir.errors import VizError, VizUsageError

GRAPH_FORMATS = ("dot", "svg", "png", "pdf")
PLOT_FORMATS = ("png", "svg", "pdf")
#: Seconds ``dot`` may take before the render is abandoned with advice to narrow the graph.
DOT_TIMEOUT_S = 600

INSTALL_DOT = ("install Graphviz (Debian/Ubuntu: apt-get install -y graphviz; macOS: brew install graphviz), "
               "or write DOT text with -o FILE.dot, which needs no binary")


def output_format(path: str, allowed: tuple[str, ...], what: str) -> str:
    """The format of ``path`` by its extension, which must be one of ``allowed``."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in allowed:
        shown = ("." + ext) if ext else "(none)"
        raise VizUsageError(f"cannot write {what} to {path!r}: unknown extension {shown}; use "
                            + ", ".join("." + a for a in allowed))
    return ext


def find_dot() -> str:
    """The path of Graphviz's ``dot``, or a :class:`VizError` that says how to install it."""
    exe = shutil.which("dot")
    if exe is None:
        raise VizError(f"rendering needs Graphviz's `dot`, which is not on PATH; {INSTALL_DOT}")
    return exe


def render(dot_text: str, path: str, fmt: str, timeout_s: float = DOT_TIMEOUT_S) -> None:
    """Lay out ``dot_text`` with ``dot`` and write ``path`` as ``fmt`` (svg, png or pdf)."""
    exe = find_dot()
    try:
        proc = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise VizError(f"dot took more than {timeout_s:.0f} s; narrow the graph (--region, --module, --around) "
                       "or fold it (--collapse-depth)") from None
    except OSError as e:
        raise VizError(f"cannot run {exe}: {e.strerror or e}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise VizError(f"dot failed (exit {proc.returncode}) writing {path}: {' / '.join(tail) or 'no message'}")


def write_text(text: str, path: str | None) -> None:
    """Write ``text`` to ``path``; ``None`` or ``"-"``: standard output."""
    import sys

    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise VizError(f"cannot write {path}: {e.strerror}") from None


# ---------------------------------------------------------------------------
# Units, as people read them in a box


__all__ = ["DOT_TIMEOUT_S", "GRAPH_FORMATS", "PLOT_FORMATS", "find_dot", "output_format", "render", "write_text"]
