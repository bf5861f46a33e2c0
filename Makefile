# Two entry points for a fresh machine with only python3 and make:
#   make demo   -- create .venv, install, run the main job on generated data
#   make test   -- create .venv, install with dev extras, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/ivy-gpu demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(VENV)/bin/ivy-gpu bench

clean:
	rm -rf $(VENV) build *.egg-info demo_output bench_output
