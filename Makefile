# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   trains the digits classifier once per activation
#   make test   runs the test suite (what CI runs)
#   make bench  writes the benchmark report into $(OUT)/bench
# Each creates or reuses its own virtual environment.

PYTHON ?= python3
VENV_TEST := .venv
VENV_DEMO := .venv-demo
OUT ?= out

.PHONY: test demo bench bench-quick lint clean

$(VENV_TEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TEST)
	$(VENV_TEST)/bin/pip install --quiet --upgrade pip
	$(VENV_TEST)/bin/pip install --quiet -e '.[test,bench]'
	touch $@

$(VENV_DEMO)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_DEMO)
	$(VENV_DEMO)/bin/pip install --quiet --upgrade pip
	$(VENV_DEMO)/bin/pip install --quiet -e '.[demo,bench]'
	touch $@

test: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/ruff check .
	$(VENV_TEST)/bin/ruff format --check .
	$(VENV_TEST)/bin/python -m pytest -n 2 -q

demo: $(VENV_DEMO)/.installed
	$(VENV_DEMO)/bin/jax-act demo --out $(OUT)/demo

# The benchmark report (report.md, report.json, plots/) in $(OUT)/bench.
# It sets the allocator itself: each speed run is a fresh process, once
# with the default malloc and once with GLIBC_TUNABLES=glibc.malloc.hugetlb=1.
# PyTorch columns appear when torch is installed in $(VENV_TEST).
bench: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m bench report --out $(OUT)/bench

bench-quick: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/python -m bench report --quick --out $(OUT)/bench-quick

lint: $(VENV_TEST)/.installed
	$(VENV_TEST)/bin/ruff check .
	$(VENV_TEST)/bin/ruff format --check .

clean:
	rm -rf $(VENV_TEST) $(VENV_DEMO) $(OUT) .pytest_cache
