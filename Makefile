# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing, installs torch 2.13.0 first (the CPU build on our machines; pinning it
# stops pip from pulling several GB of CUDA packages), then this package, then runs its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dada-installed

.PHONY: demo test test-fast lint bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dada demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(TEST_ARGS)

# the developer loop: every test but the slow end-to-end ones (pytest marker `slow`, see pyproject.toml)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(TEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
