# Two set-up commands a user needs: `make demo` and `make test`. Each creates .venv, installs torch==2.13.0 first
# (a CPU build on this machine), then prunekit with constraints.txt so that no later install can replace torch.
# Both are idempotent: the stamp files skip finished steps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_STAMP := $(VENV)/.torch-installed
STAMP := $(VENV)/.prunekit-installed
PIP_FLAGS := -q --disable-pip-version-check

.PHONY: demo test test-all lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(TORCH_STAMP): | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) torch==2.13.0
	touch $@

$(STAMP): $(TORCH_STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(PY) -m prunekit.demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
