"""acir: activation checkpointing for PyTorch training, as a compiler pipeline.

A whole training iteration is captured into an annotated graph IR (:mod:`acir.ir.graph`),
saved as protobuf (:mod:`acir.ir.serde`), transformed by passes, and lowered back to a
runnable ``torch.fx.GraphModule`` (:mod:`acir.lower`). Heavy modules (torch) are
imported lazily so that ``import acir`` and the CLIs' ``--help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "capture", "compile", "fit", "load", "lower", "save"]


def load(path: str):
    """Read an artifact (binary or text) from ``path``."""
    from acir.ir.artifact import read_path

    return read_path(path)


def save(module, path: str) -> None:
    """Write ``module`` to ``path`` as a binary artifact."""
    from acir.ir.artifact import write_path

    write_path(module, path)


def capture(*args, **kwargs):
    """Capture one training iteration into a Module; see :func:`acir.api.capture`."""
    from acir.api import capture as _capture

    return _capture(*args, **kwargs)


def lower(module):
    """Rebuild a ``torch.fx.GraphModule`` from a Module; see :func:`acir.runtime.lower.lower`."""
    from acir.runtime.lower import lower as _lower

    return _lower(module)


def compile(*args, **kwargs):  # noqa: A001 - the public name the brief fixes
    """A step function for the user's loop; see :func:`acir.api.compile`."""
    from acir.api import compile as _compile

    return _compile(*args, **kwargs)


def fit(*args, **kwargs):
    """The largest batch (or sequence) whose step fits a memory size; see :func:`acir.api.fitting.fit`."""
    from acir.api import fit as _fit

    return _fit(*args, **kwargs)
