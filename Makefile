# `make demo` and `make test` each set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all fuzz bench venv clean docs cuda-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Fast path: the CPU build of torch 2.13 when pip can find it; else any release in range.
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4,<3"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lumigrad demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "" tests

# A few minutes of property-based testing of the loaders and the ops' validation
# (LUMIGRAD_FUZZ_EXAMPLES examples per property; default 600).
fuzz: $(STAMP)
	$(PY) -m pytest -q -n 2 -m fuzz tests/robustness/test_fuzz.py

# Compile every Warp kernel overload the tests launch for CUDA (Turing, Ampere, Hopper) through Warp's own NVRTC:
# no GPU needed (lumigrad/testing/cuda_codegen.py). One process, so the plugin sees the overloads.
cuda-check: $(STAMP)
	$(PY) -m pytest -q -p lumigrad.testing.cuda_codegen --cuda-codegen 75,86,90 tests

bench: $(STAMP)
	$(PY) bench/raster.py

# The documentation site (mkdocs-material + mkdocstrings) -> site/; warnings are errors.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) out site .pytest_cache
