"""What ``acir-viz``'s three pictures share: output formats, Graphviz, units, the sweep CSV.

``acir-viz`` draws the graph (:mod:`acir.viz.dot`), the memory timeline
(:mod:`acir.viz.memory`) and the planners' Pareto curve (:func:`pareto`). Why DOT is
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

import csv
import io
import os
import shutil
import subprocess

from acir.errors import AcirError

GRAPH_FORMATS = ("dot", "svg", "png", "pdf")
PLOT_FORMATS = ("png", "svg", "pdf")
#: Seconds ``dot`` may take before the render is abandoned with advice to narrow the graph.
DOT_TIMEOUT_S = 600

INSTALL_DOT = ("install Graphviz (Debian/Ubuntu: apt-get install -y graphviz; macOS: brew install graphviz), "
               "or write DOT text with -o FILE.dot, which needs no binary")


class VizError(AcirError):
    """A picture could not be made (no ``dot``, an unwritable file, a failed render)."""


class VizUsageError(VizError):
    """A bad option, possibly only detectable against the artifact; the CLI exits 2."""


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


def human_time(s: float) -> str:
    """0.00123 -> '1.23 ms'; 'us' rather than 'µs', which some fonts lack."""
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


# ---------------------------------------------------------------------------
# The Pareto picture, from the sweep acir-sweep writes


SWEEP_COLUMNS = ("planner", "budget_bytes", "feasible", "predicted_peak_bytes", "predicted_recompute_s",
                 "recomputed", "solve_s")


def is_sweep_csv(data: bytes) -> bool:
    """Does ``data`` start with the header line of ``acir-sweep``'s CSV?"""
    return data.lstrip().startswith(SWEEP_COLUMNS[0].encode() + b"," + SWEEP_COLUMNS[1].encode())


def read_sweep_csv(data: bytes, source: str):
    """The sweep points in ``acir-sweep``'s CSV (``data``, read from ``source``)."""
    from acir.bench.sweep import SweepPoint

    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise VizUsageError(f"{source}: not a sweep CSV ({e})") from None
    if not rows or any(c not in rows[0] for c in SWEEP_COLUMNS):
        raise VizUsageError(f"{source}: not a sweep CSV with rows; expected the columns {', '.join(SWEEP_COLUMNS)} "
                            "(acir-sweep FILE -o sweep.csv writes one)")
    out = []
    for k, r in enumerate(rows, start=2):
        try:
            out.append(SweepPoint(r["planner"], int(r["budget_bytes"]), r["feasible"].strip() in ("1", "True", "true"),
                                  int(r["predicted_peak_bytes"]), float(r["predicted_recompute_s"]),
                                  int(r["recomputed"]), float(r["solve_s"])))
        except (TypeError, ValueError) as e:
            raise VizUsageError(f"{source}:{k}: bad sweep row ({e})") from None
    return out


def pareto(points, path: str, title: str | None = None) -> None:
    """Draw the sweep with :func:`acir.bench.sweep.pareto_plot` (the picture ``acir-sweep --plot`` makes).

    The CSV does not carry the no-AC peak: keep-all's predicted peak is exactly that, and
    without a keep-all row the largest budget is (the sweep's budgets end at it).
    """
    from acir.bench.sweep import pareto_plot

    keep = [p.predicted_peak_bytes for p in points if p.planner == "keep-all"]
    no_ac = keep[0] if keep else max((p.budget_bytes for p in points), default=0)
    if not no_ac:
        no_ac = max(p.predicted_peak_bytes for p in points)
    try:
        pareto_plot(points, path, title or "planners: predicted peak vs added recompute time", no_ac)
    except OSError as e:
        raise VizError(f"cannot write {path}: {e.strerror or e}") from None


__all__ = ["DOT_TIMEOUT_S", "GRAPH_FORMATS", "PLOT_FORMATS", "SWEEP_COLUMNS", "VizError", "VizUsageError", "find_dot",
           "human_time", "is_sweep_csv", "output_format", "pareto", "read_sweep_csv", "render",
           "write_text"]
