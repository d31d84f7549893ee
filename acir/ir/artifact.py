"""Reading and writing artifacts in either form, from files or standard streams.

The binary form (:mod:`acir.ir.serde`) is what tools exchange through pipes; the text form
(:mod:`acir.ir.text`) is for people and golden tests. Readers detect the form from the
first bytes, so every tool accepts both.

Writes to a file are atomic (:func:`write_atomic`): the bytes go to a temporary file in the
target's directory, are flushed and fsync'd, and only then ``os.replace`` it over the target.
So ``acir-opt x.acir -p ... -o x.acir`` never leaves ``x.acir`` half-written: a failed write
(a full disk, a file-size limit, an exception while encoding) or a kill leaves the old file
as it was, and on an error the temporary file is removed. Targets that are not regular files
(``/dev/null``, a FIFO) are written in place, since replacing them would be wrong.
"""

from __future__ import annotations

import os
import stat
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
    write_atomic(path, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (see the module docstring); errors are :class:`SerdeError`.

    A symbolic link is followed (the file it names is replaced, the link stays); a new file
    gets the permissions ``open()`` would give it, an existing one keeps its own."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SerdeError(f"cannot write {path}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device or a pipe: nothing to replace
        try:
            with open(target, "wb") as f:
                f.write(data)
        except OSError as e:
            raise SerdeError(f"cannot write {path}: {e.strerror}") from None
        return
    folder, base = os.path.split(target)
    tmp, fd = _temporary(folder, base, path)
    try:
        try:
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as e:  # a failed write, an interrupt: the target stays as it was
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise SerdeError(f"cannot write {path}: {e.strerror or e}; it was left as it was") from None
        raise
    try:  # make the rename itself durable; some file systems cannot sync a directory
        dfd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _temporary(folder: str, base: str, path: str) -> tuple[str, int]:
    """A new file ``.<base>.<random>.tmp`` beside the target, opened for writing (mode 0666 less the umask)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".{base[:200]}.{os.urandom(6).hex()}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise SerdeError(f"cannot write {path}: {e.strerror} (creating a temporary file in "
                             f"{folder or '.'})") from None
    raise SerdeError(f"cannot write {path}: no free temporary file name in {folder or '.'}")  # pragma: no cover


__all__ = ["BINARY_PREFIX", "TEXT_PREFIX", "encode", "read_bytes", "read_path", "write_atomic", "write_path"]
