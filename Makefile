# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration cluster deploy bench deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the test levels need (redis-server, iptables, debootstrap,
# systemd-nspawn, sshd); installed only when missing.
deps: $(STAMP)
	bash scripts/install-debian-deps.sh

demo: $(STAMP)
	$(VENV)/bin/ringrift-fleet up --until-promotions 1

lint: $(STAMP)
	$(VENV)/bin/ruff check ringrift_fleet tests benchmarks
	$(VENV)/bin/ruff format --check ringrift_fleet tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration

cluster: deps
	$(PY) -m pytest -q tests/cluster

deploy: deps
	$(PY) -m pytest -q tests/deploy

test: deps lint typecheck
	PY=$(PY) bash scripts/run-tests.sh

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b" >&2; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
