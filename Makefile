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
# tox-uv creates the envs with uv (seconds an env instead of a minute). uv uses the
# interpreters pyenv or the system has; it never downloads one.
TOX_UV := $(TOOLS_VENV)/bin/uv
export UV_PYTHON_DOWNLOADS := never
# Two envs at a time on two cores: about 40% faster than one after another here. tox shows the
# full output of a failing env and a one-line status of a passing one; the table printed after
# it (from tox's --result-json) adds each env's pytest result line.
TOX_PARALLEL ?= 2
TOX_RESULT := .tox/make-test-result.json

# Does anything answer on 127.0.0.1:<port>? (No client tools needed.)
PORT_UP := python3 -c 'import socket, sys; s = socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))'

$(TOX_UV):
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet "tox>=4.20,<5" "tox-uv>=1.20,<2"

test: $(TOX_UV)
	@rm -f .coverage .coverage.* $(TOX_RESULT)
	@if [ -n "$${CI:-}" ]; then \
	    label=all; echo "make test: CI is set, running every env (PostgreSQL and MariaDB must answer on 127.0.0.1:5432 and :3306)"; \
	elif $(PORT_UP) 5432 && $(PORT_UP) 3306; then \
	    label=all; echo "make test: PostgreSQL and MariaDB answer on 127.0.0.1:5432 and :3306, running every env"; \
	else \
	    label=local; echo "make test: no PostgreSQL on 127.0.0.1:5432 or no MariaDB on :3306, skipping the envs that need them"; \
	fi; \
	status=0; \
	$(TOX) run-parallel -p $(TOX_PARALLEL) -m $$label --result-json $(TOX_RESULT) || status=$$?; \
	python3 -c "$$TOX_RESULTS_SUMMARY" $(TOX_RESULT) || true; \
	exit $$status

# Tests the working tree (src/ first on the path) with whatever the current `python` has
# installed; `pip install -e '.[test]'` once, or use the .venv that `make demo` builds.
PYTEST_ARGS ?=
test-quick:
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} python -m pytest $(PYTEST_ARGS)

lint: $(TOX_UV)
	$(TOX) run -e lint

format: $(TOX_UV)
	$(TOX) exec -e lint -- ruff format .
	$(TOX) exec -e lint -- ruff check --fix .

include example_project/demo.mk

# One line per env from tox's result file: status, time, and pytest's closing line (or the
# last line the env printed), then the pytest counts summed over every env that ran pytest.
define TOX_RESULTS_SUMMARY
import json, re, sys

try:
    with open(sys.argv[1]) as f:
        envs = json.load(f)["testenvs"]
except (OSError, ValueError, KeyError):
    sys.exit(0)
closing = re.compile(r"^=+ (.*(\d+ (passed|failed|errors?|skipped|deselected)|no tests ran).* in [\d.]+s.*?) =+\s*\Z")
counts = re.compile(r"(\d+) (passed|failed|errors?|skipped)\b")
totals = {"passed": 0, "failed": 0, "skipped": 0}
runs = 0
failed = []
print()
print("make test: results per env")
for name, env in envs.items():
    if "result" not in env or name.startswith(".pkg"):
        continue
    ok = env["result"]["success"]
    if not ok:
        failed.append(name)
    commands = env.get("test", [])
    lines = [line.strip() for cmd in commands for line in (cmd["output"] + cmd["err"]).splitlines()]
    lines = [line for line in lines if line]
    results = [m.group(1) for m in map(closing.match, lines) if m]
    ran_pytest = any("pytest" in " ".join(cmd["command"]) for cmd in commands)
    if results:
        note = results[-1]
        runs += 1
        for n, word in counts.findall(note):
            totals["failed" if word.startswith("error") else word] += int(n)
    elif ran_pytest and not ok:
        note = "pytest stopped without a result (counted as 1 failed): " + (lines or [""])[-1]
        runs += 1
        totals["failed"] += 1
    else:
        total = [line for line in lines if line.startswith("TOTAL ")]
        note = " ".join(total[-1].split()) if ok and total else (lines or [""])[-1]
    print(f"  {name:<17} {'OK  ' if ok else 'FAIL'} {env['result']['duration']:7.1f}s  {note[:90]}")
timed = sorted(
    ((env["result"]["duration"], name) for name, env in envs.items()
     if "result" in env and not name.startswith(".pkg")),
    reverse=True,
)
if timed:
    print("make test: slowest envs: " + ", ".join(f"{name} {secs:.0f}s" for secs, name in timed[:5]))
if failed:
    print("make test: FAILED: " + ", ".join(failed))
if runs:
    print(f"make test: pytest results summed over the {runs} envs that ran pytest:")
    print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
endef
export TOX_RESULTS_SUMMARY

# Benchmarks (bench/, documented in docs/benchmarks.md): the package against a plain-DRF
# baseline on PostgreSQL under two uvicorn processes with the Redis channel layer. Needs
# PostgreSQL (PGHOST/PGPORT/PGUSER/PGPASSWORD, default 127.0.0.1:5432 postgres; it creates and
# drops the database salon_bench) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/9).
# Runs every scenario of bench/scenarios/ (20 to 40 minutes on two cores; the event log's in a
# database of its own, salon_bench_eventlog) and rewrites bench/results/results.json,
# docs/benchmarks.md and docs/img/benchmarks.png; BENCH_QUICK=1 make bench is a short run that writes
# bench/results/quick.*. bench/run.py list write runs only those scenarios.
BENCH_PY := .venv/bin/python
.PHONY: bench
bench:
	@test -x $(BENCH_PY) || python3 -m venv .venv
	$(BENCH_PY) -m pip install --disable-pip-version-check --quiet -e ".[example]"
	$(BENCH_PY) -m pip install --disable-pip-version-check --quiet -r bench/requirements.txt
	$(BENCH_PY) bench/run.py
