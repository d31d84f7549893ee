"""The registry: every entry is a well-formed pass, found by name, imported lazily."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from dataclasses import dataclass, field

import pytest

from acir.errors import ParseError
from acir.ir.analyses import KEYS, AnalysisKey
from acir.pipeline import registry
from acir.pipeline.pass_base import OPTION_TYPES, Pass, PassResult
from acir.pipeline.syntax import PassSpec


@pytest.mark.parametrize("name", sorted(registry.PASSES))
def test_every_registered_pass_is_well_formed(name: str) -> None:
    cls = registry.pass_class(name)
    assert cls.name == name
    assert issubclass(cls, Pass)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert cls.summary(), f"{name}: the class docstring's first line is the --list-passes summary"
    assert all(isinstance(a, AnalysisKey) for a in cls.requires + cls.preserves + cls.ensures)
    for key in cls.ensures:  # the pass writes it, or the manager can compute it with a registered pass
        assert key.producer in (cls.name, "") or key.producer in registry.PASSES
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        assert hints[f.name] in OPTION_TYPES, f"{name}.{f.name}: options are int, float, bool or str"
        assert f.metadata.get("help"), f"{name}.{f.name}: every option needs help text"
    # a pass with default options prints as its bare name and builds from it
    if not any(o.required for o in cls.options()):
        p = registry.instantiate(PassSpec(name))
        assert p.spec() == name


def test_every_analysis_producer_is_a_registered_pass() -> None:
    for key in KEYS:
        assert key.producer == "" or registry.pass_class(key.producer).ensures.count(key) == 1


def test_names_are_sorted_registry_keys() -> None:
    assert registry.names() == sorted(registry.PASSES)
    assert "dce" in registry.names()


def test_unknown_pass_suggests_a_close_name() -> None:
    with pytest.raises(ParseError, match=r"unknown pass 'dcee'; did you mean 'dce'\? known passes: .*dce.*"
                                         r"\(acir-opt --list-passes\)"):
        registry.pass_class("dcee")


def test_unknown_pass_without_a_close_name() -> None:
    with pytest.raises(ParseError) as e:
        registry.pass_class("zzzzzz")
    assert "did you mean" not in str(e.value)
    assert "known passes:" in str(e.value)


@dataclass(frozen=True)
class _Opts(Pass):
    """A pass with one option of each type."""

    name = "opts"
    count: int = field(default=3, metadata={"help": "how many"})
    ratio: float = field(default=0.5, metadata={"help": "how much"})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    file_name: str = field(default="", metadata={"help": "where"})

    def run(self, module) -> PassResult:
        return PassResult(False)


def test_instantiate_and_build_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PASSES, "opts", f"{__name__}:_Opts")
    p = registry.instantiate(PassSpec("opts", {"count": "1_000", "fast": "yes", "file-name": "a,b"}))
    assert p == _Opts(count=1000, fast=True, file_name="a,b")
    assert p.spec() == 'opts{count=1000,fast=true,file-name="a,b"}'
    assert registry.build_pipeline(p.spec() + ",dce") == [p, registry.pass_class("dce")()]


def test_registry_entry_that_is_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PASSES, "bogus", "acir.pipeline.syntax:PassSpec")
    with pytest.raises(TypeError, match="not a Pass subclass"):
        registry.pass_class("bogus")


def test_importing_the_registry_does_not_import_passes_or_torch() -> None:
    code = ("import sys, acir.pipeline.registry, acir.pipeline.syntax; "
            "acir.pipeline.syntax.parse_pipeline('dce{a=1}'); "
            "print('torch' in sys.modules, 'acir.passes.dce' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@dataclass(frozen=True)
class _Ranged(Pass):
    """A pass whose numeric options declare their valid ranges."""

    name = "ranged"
    reps: int = field(default=3, metadata={"help": "how many", "min": 1})
    seconds: float = field(default=1.0, metadata={"help": "how long", "min": 0, "finite": True})
    ratio: float = field(default=0.5, metadata={"help": "how much", "min": 0, "max": 1})
    any_float: float = field(default=0.0, metadata={"help": "unbounded"})

    def run(self, module) -> PassResult:
        return PassResult(False)


@pytest.mark.parametrize("key, text, expected", [
    ("reps", "0", "an integer at least 1"),
    ("reps", "-5", "an integer at least 1"),
    ("seconds", "-1", "a finite number at least 0"),
    ("seconds", "nan", "a finite number at least 0"),
    ("seconds", "inf", "a finite number at least 0"),
    ("seconds", "-0.001", "a finite number at least 0"),
    ("ratio", "1.5", "a number from 0 to 1"),
    ("ratio", "nan", "a number from 0 to 1"),
])
def test_out_of_range_options_are_one_parse_error(key, text, expected) -> None:
    with pytest.raises(ParseError) as e:
        _Ranged.from_options({key: text})
    assert str(e.value) == f"pass 'ranged' option '{key}': {text!r} is out of range; expected {expected}"


def test_in_range_options_and_unbounded_ones() -> None:
    p = _Ranged.from_options({"reps": "1", "seconds": "0", "ratio": "1", "any-float": "nan"})
    assert (p.reps, p.seconds, p.ratio) == (1, 0.0, 1.0) and p.any_float != p.any_float
    assert _Ranged.from_options({"any-float": "-inf"}).any_float == float("-inf")
    info = {o.key: o for o in _Ranged.options()}
    assert (info["reps"].minimum, info["reps"].maximum, info["seconds"].finite) == (1, None, True)
    assert info["any-float"].valid_range() == ""


@pytest.mark.parametrize("spec, words", [
    ("optimal{budget=60%,time-limit=-1}", "pass 'optimal' option 'time-limit': '-1' is out of range; "
                                          "expected a finite number at least 0"),
    ("optimal{budget=60%,time-limit=nan}", "'nan' is out of range"),
    ("profile{reps=0}", "pass 'profile' option 'reps': '0' is out of range; expected an integer at least 1"),
    ("profile{warmup=-1}", "pass 'profile' option 'warmup': '-1' is out of range; expected an integer at least 0"),
])
def test_the_passes_numeric_options_are_ranged(spec, words) -> None:
    with pytest.raises(ParseError) as e:
        registry.build_pipeline(spec)
    assert words in str(e.value)
