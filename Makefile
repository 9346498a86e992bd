# Developer entry points. The envs themselves are defined in tox.ini.
#
#   make test        every tox env that can run here (all of them where CI is set), then coverage
#   make test-quick  pytest in the current interpreter's env, for fast iterations
#   make lint        ruff check + ruff format --check (the tox lint env)
#   make format      ruff format + ruff check --fix, with the same ruff as the lint env
#   make demo        the example project on its embedded defaults at http://127.0.0.1:8000
#   make demo-check  the same set-up and the example's checks, without starting the server

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.PHONY: test test-quick lint format

# The interpreters tox needs: pyenv resolves python3.10 … python3.13 only while all are named.
# The first one stays the default python3.
TOX_PYENV_VERSION := 3.11.7:3.10.13:3.12.1:3.13.0
test lint format: export PYENV_VERSION := $(TOX_PYENV_VERSION)

TOOLS_VENV := .venv-tools
TOX := $(TOOLS_VENV)/bin/tox

# Does anything answer on PostgreSQL's port? (No client tools needed.)
POSTGRES_UP := python3 -c 'import socket, sys; s = socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(("127.0.0.1", 5432)))'

$(TOX):
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet "tox>=4.20,<5"

# Envs run one after another: every env's full output stays readable (and the two PostgreSQL
# envs share one test database), and tox closes with one timing line per env.
test: $(TOX)
	@rm -f .coverage .coverage.*
	@if [ -n "$${CI:-}" ]; then \
	    label=all; echo "make test: CI is set, running every env (PostgreSQL must answer on 127.0.0.1:5432)"; \
	elif $(POSTGRES_UP); then \
	    label=all; echo "make test: PostgreSQL answers on 127.0.0.1:5432, running every env"; \
	else \
	    label=local; echo "make test: no PostgreSQL on 127.0.0.1:5432, skipping the postgres envs"; \
	fi; \
	$(TOX) run -m $$label

# Tests the working tree (src/ first on the path) with whatever the current `python` has
# installed; `pip install -e '.[test]'` once, or use the .venv that `make demo` builds.
PYTEST_ARGS ?=
test-quick:
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} python -m pytest $(PYTEST_ARGS)

lint: $(TOX)
	$(TOX) run -e lint

format: $(TOX)
	$(TOX) exec -e lint -- ruff format .
	$(TOX) exec -e lint -- ruff check --fix .

include example_project/demo.mk
