"""Fault injection: nothing silent. Interrupted writes, corrupt bytes, edited text and bad options are refused.

* writes are atomic: a write that fails half-way (an exception, a full disk, a file-size
  limit) leaves the target as it was, even when ``-o`` names the input, and leaves no
  temporary file behind;
* every byte of a binary artifact is covered by its checksum: a flipped, dropped or
  inserted byte anywhere is refused as corrupt (or truncated), never decoded into a
  different module;
* a property test mutates artifacts at random, in both forms, and requires a clean acir
  error or a module that verifies, and never a size, shape or stride annotation that was
  changed and accepted.

The module mutated here is built by hand (``_step``): a tiny training step whose every node
re-derives on meta tensors (views, an offset slice, a tuple output, in-place updates), so
that every annotation it has can be checked.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_fixtures import GraphBuilder

from acir.errors import AcirError, SerdeError, VerifyError
from acir.ir import artifact
from acir.ir.graph import DType, Header, InputKind, MemoryFormat, Module, Provenance, Region, Role
from acir.ir.serde import TRAILER_BYTES, dumps, loads
from acir.ir.text import parse_module, print_module
from acir.ir.verify import rederive, verify


def _step() -> Module:
    """A linear layer, relu, an offset slice, log_softmax and nll_loss; its backward; SGD in place."""
    F, B, O = Region.FORWARD, Region.BACKWARD, Region.OPTIMIZER
    G = Role.GRAD
    b = GraphBuilder()
    w = b.input("fc.weight", InputKind.PARAMETER, (4, 3))
    bias = b.input("fc.bias", InputKind.PARAMETER, (4,))
    x = b.input("batch[0]", InputKind.BATCH, (2, 3))
    target = b.input("batch[1]", InputKind.BATCH, (2,), "int64")
    wt = b.view(w, (3, 4), (1, 3))
    b.node("aten.t.default", [w], wt, F, module="fc")
    y = b.new((2, 4))
    b.node("aten.addmm.default", [bias, x, wt], y, F, module="fc")
    h = b.new((2, 4))
    b.node("aten.relu.default", [y], h, F, module="act")
    hs = b.view(h, (2, 3), (4, 1), offset=1)
    b.node("aten.slice.Tensor", [h, 1, 1, 4], hs, F)
    logp = b.new((2, 3))
    b.node("aten._log_softmax.default", [hs, 1, False], logp, F)
    loss, total = b.new(()), b.new(())
    b.node("aten.nll_loss_forward.default", [logp, target, None, 1, -100], [loss, total], F)
    g = b.new((), role=G)
    b.node("aten.ones_like.default", [loss], g, B, kwargs={"memory_format": MemoryFormat("preserve_format")})
    g_logp = b.new((2, 3), role=G)
    b.node("aten.nll_loss_backward.default", [g, logp, target, None, 1, -100, total], g_logp, B)
    g_hs = b.new((2, 3), role=G)
    b.node("aten._log_softmax_backward_data.default", [g_logp, logp, 1, DType("float32")], g_hs, B)
    g_h = b.new((2, 4), role=G)
    b.node("aten.slice_backward.default", [g_hs, [2, 4], 1, 1, 4, 1], g_h, B)
    g_y = b.new((2, 4), role=G)
    b.node("aten.threshold_backward.default", [g_h, h, 0], g_y, B, module="act")
    g_yt = b.view(g_y, (4, 2), (1, 4))
    b.node("aten.t.default", [g_y], g_yt, B, module="fc")
    g_w = b.new((4, 3), role=G)
    b.node("aten.mm.default", [g_yt, x], g_w, B, module="fc")
    g_b = b.new((4,), role=G)
    b.node("aten.sum.dim_IntList", [g_y, [0]], g_b, B, module="fc")
    b.node("aten.add_.Tensor", [w, g_w], b.alias(w), O, kwargs={"alpha": -0.1})
    b.node("aten.add_.Tensor", [bias, g_b], b.alias(bias), O, kwargs={"alpha": -0.9})
    b.output(loss)
    prov = Provenance(model="tests/test_artifact_faults.py:step", batch_size=2, optimizer="sgd")
    return Module(Header(producer="acir 0.1.0", provenance=prov), b.graph)


def test_the_step_rederives_completely():
    r = rederive(_step())
    assert r.problems == [] and r.skipped == [] and r.checked == len(_step().graph.nodes)


# ---------------------------------------------------------------------------
# atomic writes


@pytest.fixture
def saved(tmp_path):
    """An artifact file and its bytes."""
    path = tmp_path / "step.acir"
    data = dumps(_step())
    path.write_bytes(data)
    return path, data


def _only(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_write_that_fails_half_way_leaves_the_target_and_no_temporary(saved, monkeypatch):
    path, data = saved
    real_write = os.write
    calls = []

    def write_then_fail(fd, chunk):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(fd)
        return real_write(fd, bytes(chunk[:100]))  # a short write: the rest comes next call

    monkeypatch.setattr(artifact.os, "write", write_then_fail)
    with pytest.raises(SerdeError, match=r"cannot write .*step\.acir: No space left on device; it was left as it was"):
        artifact.write_path(_step(), str(path), "text")
    assert calls, "the write started"
    assert path.read_bytes() == data and _only(path.parent) == ["step.acir"]


def test_an_encoder_that_raises_leaves_the_target(saved, monkeypatch):
    path, data = saved

    def boom(module):
        raise RuntimeError("the serialiser failed")

    monkeypatch.setattr(artifact, "dumps", boom)
    with pytest.raises(RuntimeError, match="serialiser"):
        artifact.write_path(_step(), str(path))
    assert path.read_bytes() == data and _only(path.parent) == ["step.acir"]


def test_an_interrupt_during_the_write_removes_the_temporary(saved, monkeypatch):
    path, data = saved

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        artifact.write_path(_step(), str(path), "text")
    assert path.read_bytes() == data and _only(path.parent) == ["step.acir"]


def test_opt_onto_its_own_input_survives_a_failed_write_then_replaces_it(saved, monkeypatch, capsys):
    from acir.tools.opt import main

    path, data = saved
    monkeypatch.setattr(artifact.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "I/O error")))
    assert main([str(path), "-p", "dce", "-o", str(path)]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert path.read_bytes() == data and _only(path.parent) == ["step.acir"]
    monkeypatch.undo()
    assert main([str(path), "-p", "dce", "-o", str(path)]) == 0
    after = loads(path.read_bytes())
    assert after.header.pipeline == ["dce"] and _only(path.parent) == ["step.acir"]


_FSIZE_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
from acir.tools.opt import main
sys.exit(main([sys.argv[1], "--no-verify", "--emit=text", "-o", sys.argv[1]]))
"""


def test_a_file_size_limit_leaves_the_input(saved):
    """A real failed write: the kernel refuses to let the text form grow past RLIMIT_FSIZE (EFBIG)."""
    path, data = saved
    r = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(path), str(len(data))], capture_output=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 1, r.stderr.decode()
    assert b"acir-opt: error: cannot write" in r.stderr and b"File too large" in r.stderr
    assert path.read_bytes() == data and _only(path.parent) == ["step.acir"]


def test_permissions_links_and_devices(saved, tmp_path):
    path, data = saved
    os.chmod(path, 0o640)
    artifact.write_path(_step(), str(path), "text")
    assert os.stat(path).st_mode & 0o777 == 0o640 and path.read_bytes().startswith(b"acir ")
    link = tmp_path / "link.acir"
    link.symlink_to(path)
    artifact.write_path(_step(), str(link))
    assert link.is_symlink() and path.read_bytes() == data
    artifact.write_path(_step(), os.devnull)  # written in place, never replaced
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
    assert _only(tmp_path) == ["link.acir", "step.acir"]


def test_an_unwritable_folder_is_a_serde_error(tmp_path):
    with pytest.raises(SerdeError, match=r"cannot write .*/no/such/dir/x\.acir: No such file or directory"):
        artifact.write_path(_step(), str(tmp_path / "no" / "such" / "dir" / "x.acir"))


# ---------------------------------------------------------------------------
# the checksum


def _refused(data: bytes) -> str:
    with pytest.raises(SerdeError) as e:
        loads(data, "x.acir")
    return str(e.value)


def test_every_single_byte_change_is_refused_as_corrupt():
    data = dumps(_step())
    for pos in range(len(data)):
        for xor in (0x01, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= xor
            msg = _refused(bytes(bad))
            assert "corrupt" in msg or "truncated" in msg or "not an acir artifact" in msg, (pos, msg)


def test_every_truncation_and_many_insertions_are_refused():
    data = dumps(_step())
    for n in range(len(data)):
        msg = _refused(data[:n])
        assert "corrupt" in msg or "truncated" in msg or "not an acir" in msg or "empty" in msg, (n, msg)
    for pos in range(0, len(data) + 1, 7):
        for byte in (b"\x00", b"\x75"):
            msg = _refused(data[:pos] + byte + data[pos:])
            assert "corrupt" in msg or "truncated" in msg or "not an acir" in msg, (pos, msg)


def test_the_issues_optimizer_constant_is_refused():
    """0.9 -> 0.0023 in an optimizer update: a plausible double, and a valid protobuf, but not what was written."""
    data = dumps(_step())
    assert data.count(struct.pack("<d", -0.9)) == 1
    bad = data.replace(struct.pack("<d", -0.9), struct.pack("<d", -0.0023))
    msg = _refused(bad)
    assert msg.startswith("x.acir: corrupt acir artifact: its CRC-32 is") and "re-create it with acir-capture" in msg


def test_the_layout_of_a_binary_artifact():
    from google.protobuf.message import Message  # noqa: F401 - protobuf is what reads the file

    data = dumps(_step())
    assert data.startswith(b"\x0a\x04acir") and data.endswith(b"\x7a\x03end")
    assert data[-TRAILER_BYTES] == 0x75 and TRAILER_BYTES == 10
    import zlib

    assert int.from_bytes(data[-9:-5], "little") == zlib.crc32(data[:-TRAILER_BYTES])
    assert dumps(loads(data)) == data


def test_an_artifact_without_a_checksum_is_refused():
    data = dumps(_step())
    old = data[:-TRAILER_BYTES] + b"\x7a\x03end"  # how artifacts were written before the checksum
    msg = _refused(old)
    assert "written before artifacts had checksums" in msg and "re-create it with acir-capture" in msg


def test_a_newer_artifact_is_refused_as_newer_unjudged():
    data = dumps(_step())
    # the header's schema_version is the first field of the header (08 01); bump it to 99
    at = data.index(b"\x08\x01")
    newer = data[:at] + b"\x08\x63" + data[at + 2:]
    assert "newer than this acir understands" in _refused(newer)


# ---------------------------------------------------------------------------
# random mutations of both forms (property tests)

_BASE = dumps(_step())
_TEXT = print_module(_step())
_BINARY_EDITS = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(_BASE) - 1), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, len(_BASE) - 1), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(_BASE) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_BASE)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(_BASE) - 1), st.just(0)),
), min_size=1, max_size=3)


def _apply_binary(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, x in edits:
        pos = min(pos, max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[pos] ^= 1 << x
        elif kind == "set" and b:
            b[pos] = x
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([x])
        elif kind == "delete" and b:
            del b[pos]
    return bytes(b)


def _read_and_verify(data: bytes, source: str) -> Module | None:
    """The module, verified, or None when acir refused it cleanly; any other exception fails the test."""
    try:
        m = artifact.read_bytes(data, source)
        verify(m)
    except AcirError:
        return None
    return m


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BINARY_EDITS)
def test_mutated_binary_is_refused_unless_unchanged(edits):
    data = _apply_binary(_BASE, edits)
    m = _read_and_verify(data, "x.acir")
    if m is not None:
        assert data == _BASE, "a changed binary artifact was accepted"


_NUMBER = re.compile(r"-?\d+")
_TOKEN = re.compile(r"[^\s,()\[\]{}=:]+")


@st.composite
def _text_edits(draw) -> str:
    lines = _TEXT.split("\n")[:-1]
    kind = draw(st.sampled_from(["number", "number", "number", "delete", "duplicate", "drop", "swap"]))
    k = draw(st.integers(0, len(lines) - 1))
    line = lines[k]
    if kind in ("number", "delete", "duplicate"):
        spans = [m.span() for m in (_NUMBER if kind == "number" else _TOKEN).finditer(line)]
        if not spans:
            return _TEXT
        a, b = spans[draw(st.integers(0, len(spans) - 1))]
        if kind == "number":
            old = int(line[a:b])
            new = draw(st.one_of(st.integers(-2, 2).map(lambda d: str(old + d)), st.integers(-3, 70).map(str),
                                 st.sampled_from([str(2 ** 31), str(2 ** 63), str(10 ** 30), "9" * 5000])))
            lines[k] = line[:a] + new + line[b:]
        elif kind == "delete":
            lines[k] = line[:a] + line[b:]
        else:
            lines[k] = line[:b] + line[a:b] + line[b:]
    elif kind == "drop":
        del lines[k]
    else:
        j = draw(st.integers(0, len(lines) - 1))
        lines[k], lines[j] = lines[j], lines[k]
    return "\n".join(lines) + "\n"


def _annotations(m: Module) -> dict[int, tuple]:
    """Per value: dtype, shape, strides, offset, its storage's bytes, and the first value in its storage."""
    g = m.graph
    smap = g.storage_map()
    first: dict[int, int] = {}
    out = {}
    for vid, v in g.values.items():
        s = smap.get(v.storage)
        out[vid] = (v.dtype, tuple(v.shape), tuple(v.strides), v.storage_offset,
                    None if s is None else s.nbytes, first.setdefault(v.storage, vid))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text_edits())
def test_mutated_text_is_refused_or_verifies_and_never_lies_about_sizes(text):
    m = _read_and_verify(text.encode(), "step.txt")
    if m is None:
        return
    dumps(m)  # a module that verifies is one the binary form can hold
    before, after = _annotations(_step()), _annotations(m)
    inputs = {i.value for i in m.graph.inputs}
    input_storages = {m.graph.values[v].storage for v in inputs}
    for vid in before.keys() & after.keys():
        was, now = before[vid], after[vid]
        if m.graph.values[vid].storage in input_storages:
            # What no op re-derives: a graph input's storage may be larger than its values (they are the
            # user's tensors), and a graph input's dtype is checked only as far as its users' meta kernels
            # check dtypes (mm and addmm do not). Its shape, strides, offset and aliasing are re-derived.
            assert now[4] >= was[4], f"v{vid}: storage {was[4]} -> {now[4]} bytes accepted:\n{text}"
            was, now = was[1:4] + was[5:], now[1:4] + now[5:]
            if vid not in inputs:
                was, now = was + (before[vid][0],), now + (after[vid][0],)
        assert was == now, f"v{vid}: {was} changed to {now}, and the verifier accepted it:\n{text}"


def test_a_lie_names_the_line_of_the_text():
    text = _TEXT.replace("s4=32B@cpu", "s4=64B@cpu")
    assert text != _TEXT
    line = next(i for i, ln in enumerate(text.split("\n"), 1) if "s4=64B@cpu" in ln)
    m = parse_module(text, "step.txt")
    with pytest.raises(VerifyError, match=rf"\n  step.txt:{line}: storage s4: recorded as 64 bytes, but "
                                          r"aten.addmm.default \(n1 \(addmm\)\) allocates 32 bytes for v"):
        verify(m)
    verify(m, rederive=False)  # the structure is sound: only re-derivation sees it


@pytest.mark.parametrize("tool", ["opt", "lower", "run"])
def test_the_clis_rederive_unless_told_not_to(tool, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"acir.tools.{tool}").main
    path = tmp_path / "step.txt"
    path.write_text(_TEXT.replace("s4=32B@cpu", "s4=64B@cpu"))
    out = ["-o", str(tmp_path / "out")] if tool != "run" else []
    assert main([str(path), *out]) == 1
    err = capsys.readouterr().err
    assert f"acir-{tool}: error: " in err and f"step.txt:{_line_of('s4=32B@cpu')}: storage s4: recorded as 64" in err
    rc = main([str(path), "--no-rederive", *out])
    err = capsys.readouterr().err
    assert "IR verification failed" not in err
    if tool == "run":  # past the verifier, acir-run wants to rebuild a model this step has not got
        assert rc == 1 and err.startswith("acir-run: error: ") and "step" in err, err
    else:
        assert rc == 0, err


def _line_of(fragment: str) -> int:
    return next(i for i, ln in enumerate(_TEXT.split("\n"), 1) if fragment in ln)
