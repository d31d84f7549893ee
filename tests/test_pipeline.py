"""Pipeline text: mlir-opt syntax, exact round-trips, and errors that point at a column."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acir.errors import ParseError
from acir.pipeline.syntax import PassSpec, format_pipeline, format_value, parse_pipeline


def test_simple_pipeline() -> None:
    assert parse_pipeline("profile{reps=5},liveness,mutwo{budget=2GiB},rewrite") == [
        PassSpec("profile", {"reps": "5"}), PassSpec("liveness"),
        PassSpec("mutwo", {"budget": "2GiB"}), PassSpec("rewrite"),
    ]


def test_empty_pipeline_is_valid() -> None:
    assert parse_pipeline("") == []
    assert parse_pipeline("   \n") == []
    assert format_pipeline([]) == ""


def test_whitespace_around_names_commas_and_options() -> None:
    assert parse_pipeline("  a ,  b { k = v , k2=v2 } ,c  ") == [
        PassSpec("a"), PassSpec("b", {"k": "v", "k2": "v2"}), PassSpec("c")]


def test_option_order_is_kept() -> None:
    (spec,) = parse_pipeline("p{z=1,a=2,m=3}")
    assert list(spec.options) == ["z", "a", "m"]
    assert format_pipeline([spec]) == "p{z=1,a=2,m=3}"


def test_quoted_values() -> None:
    (spec,) = parse_pipeline(r'plan{file="a,b.txt",q="say \"hi\" \\ ok",e=""}')
    assert spec.options == {"file": "a,b.txt", "q": 'say "hi" \\ ok', "e": ""}
    assert parse_pipeline(format_pipeline([spec])) == [spec]


def test_bare_values_keep_inner_spaces_and_odd_characters() -> None:
    (spec,) = parse_pipeline("p{a=3 GiB,b=60%,c=/tmp/x-y.txt,d=1e-3}")
    assert spec.options == {"a": "3 GiB", "b": "60%", "c": "/tmp/x-y.txt", "d": "1e-3"}


def test_empty_braces() -> None:
    assert parse_pipeline("a{}") == [PassSpec("a")]


def test_format_value_quotes_only_when_needed() -> None:
    assert format_value("2GiB") == "2GiB"
    assert format_value("a,b") == '"a,b"'
    assert format_value("") == '""'
    assert format_value(" x") == '" x"'
    assert format_value('q"') == '"q\\""'


@pytest.mark.parametrize("text, column, words", [
    ("a,b{k=v", 8, "expected ',' or '}'"),
    ("a,,b", 3, "expected a pass name"),
    ("a,", 3, "expected a pass name"),
    (",a", 1, "expected a pass name"),
    ("a b", 3, "expected ',' between passes"),
    ("a{k}", 4, "expected '='"),
    ("a{k=}", 5, "expected a value for option 'k'"),
    ("a{=v}", 3, "expected an option name"),
    ('a{k="x', 5, "unterminated string"),
    ("a{k=1,k=2}", 7, "option 'k' given twice"),
    ("a{k=v}}", 7, "expected ',' between passes"),
    ("a{k=v w=x}", 8, "after the value of 'k'"),
    ("mutwo{budget=3GiB", 18, "(found the end)"),
    ("a;b", 2, None),
])
def test_errors_point_at_the_column(text: str, column: int, words: str | None) -> None:
    with pytest.raises(ParseError) as e:
        parse_pipeline(text)
    msg = str(e.value)
    first = msg.splitlines()[0]
    assert first.startswith("pipeline: ")
    assert f"at column {column}" in first
    assert first.endswith(f": {text}")
    if words:
        assert words in first
    # the caret line sits under the column
    lines = msg.splitlines()
    assert lines[1] == f"  {text}"
    assert lines[2].index("^") - 2 == column - 1


_names = st.from_regex(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", fullmatch=True)
_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_specs = st.builds(PassSpec, _names, st.dictionaries(_names, _values, max_size=4))


@given(st.lists(_specs, max_size=5))
def test_format_then_parse_round_trips(specs: list[PassSpec]) -> None:
    text = format_pipeline(specs)
    assert parse_pipeline(text) == specs
    assert format_pipeline(parse_pipeline(text)) == text


@given(st.text(alphabet="ab{}=,\" \\k", max_size=20))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        specs = parse_pipeline(text)
    except ParseError as e:
        assert str(e).startswith("pipeline: ")
        return
    assert parse_pipeline(format_pipeline(specs)) == specs


def test_spec_str_is_its_text() -> None:
    assert str(PassSpec("mutwo", {"budget": "3GiB"})) == "mutwo{budget=3GiB}"
