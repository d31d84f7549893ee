# Two entry points, both from a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: capture ResNet-152 (batch 2), round-trip it, run it back against eager, measure.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/acir-capture resnet152 -b 2 -o out/r152.acir
	$(BIN)/acir-opt out/r152.acir -p '' -o out/r152.same.acir
	cmp out/r152.acir out/r152.same.acir && echo "round trip: identical bytes"
	$(BIN)/acir-run out/r152.acir --check --measure --iters 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

regen-proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Ischemas --python_out=acir/_proto schemas/acir.proto

.PHONY: install demo test regen-proto
