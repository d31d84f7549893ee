"""One small hierarchy of errors, so that every CLI can print ``acir-<tool>: error: ...``.

Each error's message says what went wrong *and* how to fix it; the CLIs print it
without a traceback (``--traceback`` shows the stack).
"""

from __future__ import annotations


class AcirError(Exception):
    """Base of every error acir reports to a user."""


class ParseError(AcirError):
    """The textual form (IR text, pipeline, option, budget) could not be read."""


class SerdeError(AcirError):
    """A binary artifact could not be decoded: not acir, truncated, corrupt or too new."""


class VerifyError(AcirError):
    """The IR breaks one of its invariants."""


class PreconditionError(AcirError):
    """A pass was asked to run without what it requires."""


class PassFailed(AcirError):
    """A pass raised while running."""


class CaptureError(AcirError):
    """A model, its factory or its training step could not be captured."""


class RunError(AcirError):
    """Lowering, binding or running a captured step failed."""
