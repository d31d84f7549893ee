"""Pipeline text: ``profile{reps=5},liveness,mutwo{budget=2GiB},rewrite``.

The syntax is mlir-opt's and xdsl-opt's, so that it reads as people already expect: a
comma-separated list of pass names, each optionally followed by ``{key=value,...}``.
It is parsed into plain :class:`PassSpec` values (name + option strings) *before* any
pass is imported or any option is typed, so that a typo is reported at its column
without touching torch; :mod:`acir.pipeline.registry` turns specs into passes.

Values are bare (any characters except ``,{}=`` and double quotes; surrounding
whitespace is dropped) or double-quoted with ``\\"`` and ``\\\\`` escapes, so that a
file name with a comma still fits: ``plan{file="a,b.txt"}``. :func:`format_pipeline`
quotes exactly when a value would not read back bare, so text round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acir.errors import ParseError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_SPECIAL = frozenset(',{}="')


@dataclass(frozen=True)
class PassSpec:
    """One pass as written in a pipeline: its name and its options, still as text, in order."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_pipeline([self])


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str, pos: int | None = None, found: bool = True) -> ParseError:
        """``pipeline: <what> at column N (found X): <text>``, then the text with a caret under N."""
        pos = self.pos if pos is None else pos
        seen = ""
        if found:
            c = self.text[pos] if pos < len(self.text) else ""
            seen = f" (found {c!r})" if c else " (found the end)"
        caret = " " * pos + "^"
        return ParseError(f"pipeline: {what} at column {pos + 1}{seen}: {self.text}\n  {self.text}\n  {caret}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def name(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail(f"expected {what}")
        return self.text[start:self.pos]

    def value(self, key: str) -> str:
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _SPECIAL:
            self.pos += 1
        raw = self.text[start:self.pos].strip()
        if not raw:
            raise self.fail(f"expected a value for option '{key}' (write {key}=\"\" for an empty string)")
        return raw

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in '"\\':
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            out.append(c)
            self.pos += 1
        raise self.fail("unterminated string (expected a closing '\"')", start, found=False)

    def options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        self.pos += 1  # '{'
        self.skip_ws()
        if self.peek() == "}":
            self.pos += 1
            return opts
        while True:
            self.skip_ws()
            key_at = self.pos
            key = self.name("an option name")
            if key in opts:
                raise self.fail(f"option '{key}' given twice", key_at, found=False)
            self.skip_ws()
            if self.peek() != "=":
                raise self.fail(f"expected '=' after option '{key}'")
            self.pos += 1
            self.skip_ws()
            opts[key] = self.value(key)
            self.skip_ws()
            c = self.peek()
            if c == "}":
                self.pos += 1
                return opts
            if c != ",":
                raise self.fail(f"expected ',' or '}}' after the value of '{key}'")
            self.pos += 1

    def pipeline(self) -> list[PassSpec]:
        specs: list[PassSpec] = []
        self.skip_ws()
        if self.pos == len(self.text):
            return specs
        while True:
            self.skip_ws()
            name = self.name("a pass name")
            self.skip_ws()
            opts = self.options() if self.peek() == "{" else {}
            specs.append(PassSpec(name, opts))
            self.skip_ws()
            c = self.peek()
            if not c:
                return specs
            if c != ",":
                raise self.fail("expected ',' between passes")
            self.pos += 1


def parse_pipeline(text: str) -> list[PassSpec]:
    """Parse pipeline text; the empty (or all-blank) string is the empty pipeline."""
    return _Parser(text).pipeline()


def _needs_quotes(value: str) -> bool:
    return (not value or value != value.strip() or any(c in _SPECIAL or c == "\\" for c in value))


def format_value(value: str) -> str:
    """``value`` as it must be written in a pipeline: bare when it reads back bare, else quoted."""
    if not _needs_quotes(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_pipeline(specs: list[PassSpec]) -> str:
    """The inverse of :func:`parse_pipeline`: ``parse_pipeline(format_pipeline(s)) == s``."""
    parts = []
    for s in specs:
        if s.options:
            opts = ",".join(f"{k}={format_value(v)}" for k, v in s.options.items())
            parts.append(f"{s.name}{{{opts}}}")
        else:
            parts.append(s.name)
    return ",".join(parts)


__all__ = ["PassSpec", "format_pipeline", "format_value", "parse_pipeline"]
