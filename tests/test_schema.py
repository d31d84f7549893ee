"""The checked-in protobuf bindings match schemas/acir.proto, and only serde touches them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT


def test_generated_code_matches_the_schema(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/schemas", f"--python_out={tmp_path}",
                    f"{ROOT}/schemas/acir.proto"], check=True, timeout=120)
    fresh = (tmp_path / "acir_pb2.py").read_text()
    checked_in = open(os.path.join(ROOT, "acir", "ir", "_proto", "acir_pb2.py")).read()
    assert fresh == checked_in, "acir/ir/_proto/acir_pb2.py is stale: run `make regen-proto`"


def test_only_serde_imports_the_generated_classes():
    offenders = []
    for folder in ("acir", "passes", "tools"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                path = os.path.join(dirpath, f)
                if not f.endswith(".py") or "_proto" in path:
                    continue
                serde = path.endswith(os.path.join("acir", "ir", "serde.py"))
                if re.search(r"acir_pb2|_proto", open(path).read()) and not serde:
                    offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


def test_schema_version_and_magic():
    from acir.ir.graph import SCHEMA_VERSION
    from acir.ir.serde import BINARY_PREFIX

    text = open(os.path.join(ROOT, "schemas", "acir.proto")).read()
    assert 'syntax = "proto3"' in text and "schema_version" in text
    assert SCHEMA_VERSION >= 1 and BINARY_PREFIX == b"\x0a\x04acir"
