"""Reading and writing artifacts in either form, from files or standard streams.

The binary form (:mod:`acir.ir.serde`) is what tools exchange through pipes; the text form
(:mod:`acir.ir.text`) is for people and golden tests. Readers detect the form from the
first bytes, so every tool accepts both.
"""

from __future__ import annotations

import sys

from acir.errors import SerdeError
from acir.ir.graph import Module
from acir.ir.serde import BINARY_PREFIX, dumps, loads

TEXT_PREFIX = b"acir "


def _is_text(data: bytes) -> bool:
    """Text artifacts start with "acir ", after any comment ("# ...") or blank lines."""
    i = 0
    while i < len(data) and data[i:i + 1] in (b"#", b"\n", b"\r", b" ", b"\t"):
        if data[i:i + 1] == b"#":
            nl = data.find(b"\n", i)
            if nl < 0:
                return False
            i = nl + 1
        else:
            i += 1
    return data.startswith(TEXT_PREFIX, i)


def read_bytes(data: bytes, source: str) -> Module:
    if _is_text(data):
        from acir.ir.text import parse_module

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SerdeError(f"{source}: text artifact is not valid UTF-8 ({e})") from None
        return parse_module(text, source)
    return loads(data, source)


def read_path(path: str | None) -> Module:
    """Read from ``path``; ``None`` or ``"-"`` reads standard input."""
    if path in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise SerdeError("no input: give an artifact file, or pipe one in (acir-capture mlp | acir-opt)")
        return read_bytes(sys.stdin.buffer.read(), "<stdin>")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SerdeError(f"cannot read {path}: {e.strerror}") from None
    return read_bytes(data, path)


def encode(module: Module, emit: str = "binary") -> bytes:
    if emit == "binary":
        return dumps(module)
    if emit == "text":
        from acir.ir.text import print_module

        return print_module(module).encode("utf-8")
    raise SerdeError(f"unknown output form {emit!r}; use binary or text")


def write_path(module: Module, path: str | None, emit: str = "binary") -> None:
    """Write to ``path``; ``None`` or ``"-"`` writes standard output (binary only when it is not a terminal)."""
    data = encode(module, emit)
    if path in (None, "-"):
        if emit == "binary" and sys.stdout.isatty():
            raise SerdeError("refusing to write a binary artifact to a terminal; use -o FILE, a pipe, or --emit=text")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SerdeError(f"cannot write {path}: {e.strerror}") from None


__all__ = ["BINARY_PREFIX", "TEXT_PREFIX", "encode", "read_bytes", "read_path", "write_path"]
