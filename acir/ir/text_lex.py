"""The low-level readers of the text-form parser (:mod:`acir.ir.text_parse`): strings, words, integers, node arguments.

Kept apart from the line grammar (:mod:`acir.ir.text_parse`) so that each file reads on its own.
Every reader takes the line and a position and returns what it read with the position
after it; a failure raises :class:`Bad` with the column, which the parser turns into a
:class:`~acir.errors.ParseError` naming the line. Nothing is ``eval``'d: argument lines are
tokenised by one regular expression and assembled by hand.
"""

from __future__ import annotations

import math
import re
from json.decoder import scanstring

from acir.ir.graph import (
    DTYPE_SIZE,
    LAYOUTS,
    MEMORY_FORMATS,
    Device,
    DType,
    Layout,
    MemoryFormat,
    ValueRef,
)

__all__ = ["Bad", "expect", "expect_end", "read_call", "read_int", "read_ints", "read_string", "read_word"]

_CONSTS = {"True": True, "False": False, "None": None, "inf": math.inf, "nan": math.nan}

#: Argument tokens: a list of ints, a string, a number, a word (with '=' when it is a keyword
#: name), a comma with its spaces, or any other single character. They cover every character.
_TOKEN = re.compile(r'\[-?\d+(?:, -?\d+)*\]|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-inf|-nan'
                    r"|[A-Za-z_][A-Za-z0-9_.]*=?|, *|.")
_INT = re.compile(r"-?\d+")


class Bad(Exception):
    """A parse error at column ``col`` (0-based) of the current line."""

    def __init__(self, col: int, msg: str) -> None:
        super().__init__(msg)
        self.col, self.msg = col, msg


def read_string(s: str, i: int) -> tuple[str, int]:
    if not s.startswith('"', i):
        raise Bad(i, "expected a JSON-quoted string")
    try:
        return scanstring(s, i + 1)
    except ValueError as e:
        msg = str(getattr(e, "msg", e))
        raise Bad(i, "unterminated string" if msg.startswith("Unterminated") else f"bad string: {msg}") from None


def read_word(s: str, i: int, pat: re.Pattern, what: str) -> tuple[str, int]:
    if s.startswith('"', i):
        return read_string(s, i)
    m = pat.match(s, i)
    if m is None:
        raise Bad(i, f"expected {what}")
    return m.group(), m.end()


def expect(s: str, i: int, lit: str) -> int:
    if not s.startswith(lit, i):
        raise Bad(i, f"expected {lit.strip()!r}" if lit.strip() else "expected a space")
    return i + len(lit)


def read_int(s: str, i: int, what: str) -> tuple[int, int]:
    m = _INT.match(s, i)
    if m is None:
        raise Bad(i, f"expected {what} (an integer)")
    return int(m.group()), m.end()


def read_ints(text: str, col: int, what: str) -> tuple[int, ...]:
    try:
        return tuple([int(x) for x in text.split(",")]) if text else ()
    except ValueError:
        raise Bad(col, f"bad {what} [{text}]: expected integers separated by ','") from None


def expect_end(s: str, i: int) -> None:
    if i != len(s):
        raise Bad(i, f"unexpected text {s[i:i + 20]!r} at the end of the line")


def _atom(t: str, toks: list[str], k: int):
    """The argument that token ``t`` starts, and the index of the token after it."""
    c = t[0]
    if c == "v" and t[1:].isdigit():
        return ValueRef(int(t[1:])), k
    if c == "-" or "0" <= c <= "9":
        if t.lstrip("-").isdigit():
            return int(t), k
        if t == "-":
            raise Bad(-1, "bad number")
        return float(t), k
    if c == '"':
        return read_string(t, 0)[0], k
    if t in _CONSTS:
        return _CONSTS[t], k
    if t.startswith("torch."):
        name = t[6:]
        for names, cls in ((DTYPE_SIZE, DType), (LAYOUTS, Layout), (MEMORY_FORMATS, MemoryFormat)):
            if name in names:
                return cls(name), k
        raise Bad(-1, f"unknown torch name {t!r}: not a dtype, layout or memory format")
    if t == "device" and toks[k:k + 1] == ["("] and toks[k + 2:k + 3] == [")"] and toks[k + 1][0] == '"':
        return Device(read_string(toks[k + 1], 0)[0]), k + 3
    raise Bad(-1, f"unexpected {t!r} in the arguments")


def read_call(s: str, i: int) -> tuple[list, dict, int]:
    """The arguments after ``op(``, and the position after their ``)``.

    The rest of the line is tokenised by one C-level ``findall`` (up to ``) -> `` when no
    string comes first); lists nest by an explicit stack. Tokens cover every character,
    so a position is the sum of the consumed tokens' lengths.
    """
    end, quote = s.find(") -> ", i), s.find('"', i)
    toks = _TOKEN.findall(s, i, end + 1) if end >= 0 and not 0 <= quote < end else _TOKEN.findall(s, i)
    toks.append("")  # end of line
    args: list = []
    kwargs: dict = {}
    stack: list[list] = []
    k, key = 0, None
    try:
        if toks[0] == ")":
            return args, kwargs, i + 1
        while True:
            t = toks[k]
            k += 1
            if not stack:  # a keyword name?
                if t[-1:] == "=" and len(t) > 1:
                    key, t = t[:-1], toks[k]
                    k += 1
                elif t[:1] == '"' and toks[k] == "=":
                    key, t = read_string(t, 0)[0], toks[k + 1]
                    k += 2
            if t == "[":
                if toks[k] != "]":
                    stack.append([])
                    continue
                val, k = [], k + 1
            elif not t:
                raise Bad(-1, "the argument list is not closed with ')'")
            elif t[0] == "[":
                val = [int(x) for x in t[1:-1].split(", ")]
            else:
                val, k = _atom(t, toks, k)
            while True:  # place the value, then read what follows it
                if stack:
                    stack[-1].append(val)
                elif key is None:
                    if kwargs:
                        raise Bad(-1, "positional argument after keyword arguments")
                    args.append(val)
                elif key in kwargs:
                    raise Bad(-1, f"keyword argument {key!r} given twice")
                else:
                    kwargs[key] = val
                    key = None
                t = toks[k]
                k += 1
                if t[:1] == ",":
                    break
                if t == "]" and stack:
                    val = stack.pop()
                    continue
                if t == ")" and not stack:
                    return args, kwargs, i + sum(map(len, toks[:k]))
                raise Bad(-1, f"expected ',' or '{']' if stack else ')'}'" + (f", not {t!r}" if t else ""))
    except Bad as e:  # point at the token just read
        e.col = i + sum(map(len, toks[:max(k - 1, 0)]))
        raise
