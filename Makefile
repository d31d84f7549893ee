# Two entry points, both from a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	@# acir-viz renders through Graphviz's `dot` (Debian: apt-get install graphviz; macOS: brew install graphviz)
	command -v dot >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq graphviz; } \
		|| echo "warning: Graphviz's dot is missing; acir-viz can write DOT only (install graphviz)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: capture ResNet-152 (batch 8), profile it, plan with μ-TWO at 60% of what
# AC can act on, rewrite, then run the rewritten step against the original in one process:
# bit-identical updates, measured peak and latency with and without AC. Times are taken with
# freed memory kept in the heap, as a GPU's caching allocator does (glibc's default unmaps and
# re-faults big tensors every iteration, so a memory saving looks like a speed-up);
# DEMO_MALLOC=default measures glibc as configured. The figures say which.
DEMO_MODEL ?= resnet152
DEMO_BATCH ?= 8
DEMO_BUDGET ?= 60%
DEMO_MALLOC ?= heap-retained
demo: $(STAMP)
	mkdir -p out/demo
	$(BIN)/acir-capture $(DEMO_MODEL) -b $(DEMO_BATCH) -o out/demo/model.acir
	$(BIN)/acir-opt out/demo/model.acir -p 'profile{reps=3,warmup=1,malloc=$(DEMO_MALLOC)},liveness' -o out/demo/model.p.acir
	$(BIN)/acir-opt out/demo/model.p.acir -p 'mutwo{budget=$(DEMO_BUDGET)},rewrite' -o out/demo/model.ac.acir --time-passes
	$(BIN)/acir-stats out/demo/model.ac.acir
	$(BIN)/acir-run out/demo/model.ac.acir --check --measure --iters 3 --against out/demo/model.p.acir --malloc $(DEMO_MALLOC)

test: $(STAMP)
	$(BIN)/python -m pytest -q

regen-proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Ischemas --python_out=acir/ir/_proto schemas/acir.proto

.PHONY: install demo test regen-proto
