"""Progress bars on stderr for the work that takes long, and the one policy that decides when.

Capturing ResNet-152 takes half a minute, profiling it minutes, the MILP up to its time
limit and a full ``acir-bench`` hours; a user must see what is running and how far it is.
Every such step asks this module for a bar (:func:`bar`) rather than printing its own, so
that *when* bars are drawn is decided here, once: only when stderr is a terminal, and
never after a CLI's ``-q/--quiet`` (:func:`set_quiet`). Piped or redirected stderr (a log
file, a test capturing output) therefore gets no carriage returns and no bar characters,
and stdout, where artifacts and ``--json`` go, is never written to.

The bars are tqdm's (``tqdm``: maintained, thread-safe, nests bars by position and redraws
them around plain lines, see :func:`write`). A disabled tqdm bar takes every call and does
nothing, so callers never test :func:`enabled` themselves unless they would do extra work
for the bar alone. :func:`ticking` keeps a bar's elapsed time moving during one long call
that reports nothing (a trace, a solver without callbacks).

This module is the bottom layer, beside :mod:`acir.units`: it imports nothing from acir.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Callable, Iterator

__all__ = ["bar", "enabled", "quiet", "set_quiet", "ticking", "write"]

_quiet = False


def set_quiet(value: bool) -> None:
    """Turn bars off (``-q``) or back on (they still need a terminal) for this process."""
    global _quiet
    _quiet = bool(value)


def quiet() -> bool:
    """Was :func:`set_quiet` told to be quiet?"""
    return _quiet


def enabled() -> bool:
    """Do bars draw now: not quiet, and stderr a terminal?"""
    if _quiet:
        return False
    err = sys.stderr
    try:
        return err is not None and err.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(desc: str, total: float | None = None, unit: str = "it", *, leave: bool = False, **kwargs: Any):
    """A tqdm bar on stderr, drawn only when :func:`enabled` (a no-op bar otherwise).

    ``total`` None draws a counter with the elapsed time, no percentage. ``leave`` False
    (the default) clears the bar when it closes, so that nested bars and the result lines
    printed after them stay readable. Use it as a context manager, or close it.
    """
    from tqdm import tqdm

    on = enabled()
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, disable=not on,
                dynamic_ncols=True, mininterval=0.2, smoothing=0.1, **kwargs)


def write(msg: str) -> None:
    """One line on stderr that does not tear the bars being drawn (they are redrawn under it)."""
    if enabled():
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def ticking(b, interval: float = 0.5, at: Callable[[], float] | None = None) -> Iterator[None]:
    """Redraw bar ``b`` every ``interval`` seconds until the block ends, so that its elapsed
    time moves while one long call runs; ``at()``, when given, is where the bar stands then
    (say, seconds spent against a time limit). Nothing happens when the bar is disabled."""
    if getattr(b, "disable", True):
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(interval):
            try:
                if at is not None:
                    b.n = at()
                b.refresh()
            except Exception:  # noqa: BLE001 - a bar closed meanwhile; progress must never fail the work
                return

    t = threading.Thread(target=tick, name="acir-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
