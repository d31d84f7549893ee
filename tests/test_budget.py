"""Budgets: the forms users write, the errors for the rest, and what a percentage resolves to."""

from __future__ import annotations

import pytest

from acir.analysis.budget import (
    Budget,
    InfeasibleBudget,
    infeasible_message,
    parse_budget,
)
from acir.errors import AcirError, ParseError

KiB, MiB, GiB, TiB = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4


@pytest.mark.parametrize("text, nbytes", [
    ("3GiB", 3 * GiB),
    ("512MiB", 512 * MiB),
    ("4GB", 4 * 10 ** 9),
    ("1.5GiB", 1610612736),
    ("100KiB", 100 * KiB),
    ("123456", 123456),
    ("123456B", 123456),
    ("123456b", 123456),
    ("2TiB", 2 * TiB),
    ("1TB", 10 ** 12),
    ("7kb", 7000),
    ("250MB", 250 * 10 ** 6),
    ("3gib", 3 * GiB),
    ("3GIB", 3 * GiB),
    ("  3 GiB  ", 3 * GiB),
    ("0.5KiB", 512),
    (".5MiB", MiB // 2),
    ("2.KiB", 2 * KiB),
])
def test_absolute(text, nbytes):
    b = parse_budget(text)
    assert b == Budget(bytes=nbytes) and b.percent is None
    assert b.resolve(10, 20) == nbytes  # absolute: the analyses do not matter


@pytest.mark.parametrize("text, percent", [("60%", 60.0), ("60.5%", 60.5), ("100%", 100.0), (" 5 % ", 5.0),
                                           ("0.1%", 0.1)])
def test_percent(text, percent):
    assert parse_budget(text) == Budget(percent=percent)


@pytest.mark.parametrize("text", ["", "x", "GiB", "3 GiBs", "3XB", "-1GiB", "1e9", "3 G iB", "60%%", "%",
                                  "1,000", "3GiB 2MiB", "nan", "inf%"])
def test_unreadable(text):
    with pytest.raises(ParseError) as e:
        parse_budget(text)
    assert str(e.value) == (f"bad budget {text!r}: use bytes with a unit (3GiB, 512MiB, 4GB) "
                            "or a percentage (60%)")


@pytest.mark.parametrize("text, words", [
    ("0%", "a percentage must be above 0% and at most 100%"),
    ("0.0%", "a percentage must be above 0% and at most 100%"),
    ("100.5%", "a percentage must be above 0% and at most 100%"),
    ("250%", "a percentage must be above 0% and at most 100%"),
    ("0", "more than 0 bytes"),
    ("0GiB", "more than 0 bytes"),
    ("1.5", "a byte count must be whole"),
    ("1.5B", "a byte count must be whole"),
])
def test_out_of_range(text, words):
    with pytest.raises(ParseError, match=r"^bad budget ") as e:
        parse_budget(text)
    assert words in str(e.value)


def test_percent_resolves_over_what_ac_can_act_on():
    persistent, peak = 1000, 3000
    assert parse_budget("100%").resolve(persistent, peak) == peak  # 100% is the no-AC peak
    assert parse_budget("60%").resolve(persistent, peak) == 1000 + 1200
    assert parse_budget("50%").resolve(persistent, peak) == 2000
    assert parse_budget("0.001%").resolve(persistent, peak) == persistent  # never below the persistent floor
    assert parse_budget("60.5%").resolve(0, 1001) == round(0.605 * 1001) == 606
    assert parse_budget("33%").resolve(persistent, persistent) == persistent  # nothing to act on


def test_budget_holds_exactly_one_form():
    with pytest.raises(ValueError):
        Budget()
    with pytest.raises(ValueError):
        Budget(bytes=1, percent=1.0)
    assert str(parse_budget("60%")) == "60%" and str(parse_budget("1KiB")) == "1024B"


def test_infeasible_message_states_the_floor():
    msg = infeasible_message(1288490188, 1610612736, "mutwo{budget=1.2GiB}")
    assert msg == ("mutwo{budget=1.2GiB}: budget 1.2 GiB (1288490188 B) is below the smallest peak recomputation "
                   "can reach, 1.5 GiB (1610612736 B); the smallest reachable peak is 1610612736 bytes \u2014 "
                   "raise the budget to at least that")
    e = InfeasibleBudget(1288490188, 1610612736, "mutwo")
    assert isinstance(e, AcirError) and e.floor_bytes == 1610612736 and e.budget_bytes == 1288490188
    assert "smallest" in str(e) and "reachable" in str(e) and str(e).startswith("mutwo: budget 1.2 GiB")


@pytest.mark.parametrize("text", ["10000000000000000000000000000000000000000GiB", "9223372036854775808",
                                  "9223372036854775808B", "8388608TiB", "9" * 5000 + "GiB",
                                  "99999999999999999999999999999.5GiB", "9223372036854775807.5"])
def test_huge_budgets_are_one_parse_error(text):
    """Past 2**63 - 1 bytes (the plan block's int64) a budget is refused with one sentence, never an overflow."""
    with pytest.raises(ParseError) as e:
        parse_budget(text)
    msg = str(e.value)
    assert msg.startswith("bad budget ") and "more than the largest budget, 9223372036854775807 bytes" in msg
    assert len(msg) < 300  # a 5000-digit budget is not echoed whole


@pytest.mark.parametrize("text", ["nan", "inf", "NaNGiB", "infGiB", "-inf", "1e400GiB", "1e3GiB"])
def test_non_finite_or_exponent_budgets_are_unreadable(text):
    with pytest.raises(ParseError, match=r"^bad budget .*: use bytes with a unit"):
        parse_budget(text)


def test_the_largest_budget_is_allowed():
    from acir.analysis.budget import MAX_BUDGET_BYTES

    assert parse_budget("9223372036854775807").bytes == MAX_BUDGET_BYTES == 2 ** 63 - 1
    assert parse_budget("8388607TiB").bytes == 8388607 * TiB
