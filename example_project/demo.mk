# The example project's targets, included by the top-level Makefile (`include example_project/demo.mk`).
#
#   make demo         fresh clone -> .venv, migrations, demo data, server on 127.0.0.1:8000
#   make demo-check   the same without starting the server, plus the project's checks (CI)
#   make demo-setup   only install, migrate and seed
#   make serve        the production topology on this machine (needs REDIS_URL): gunicorn
#                     (HTTP) on DEMO_PORT, daphne (WebSockets) on SERVE_WS_PORT, a Celery
#                     worker with beat (example_project/Procfile, run by serve.py); no demo data
#
# Needs nothing but python3. Runs on the embedded defaults (SQLite, in-memory channel layer,
# eager Celery, console e-mail) unless DATABASE_URL, REDIS_URL, ... are set in the environment.

DEMO_PYTHON ?= python3
DEMO_VENV ?= .venv
DEMO_HOST ?= 127.0.0.1
DEMO_PORT ?= 8000

DEMO_VENV_PY := $(abspath $(DEMO_VENV))/bin/python
DEMO_STAMP := $(abspath $(DEMO_VENV))/.example-installed
DEMO_MANAGE := cd example_project && $(DEMO_VENV_PY) manage.py
DEMO_URL := http://$(DEMO_HOST):$(DEMO_PORT)

.PHONY: demo demo-setup demo-check serve

# Invite e-mails (and the link seed_demo prints) point at this server, whatever DEMO_PORT is,
# unless INVITE_URL is set in the environment.
demo demo-setup demo-check serve: export INVITE_URL ?= $(DEMO_URL)/invite/{token}

$(DEMO_VENV_PY):
	$(DEMO_PYTHON) -m venv $(DEMO_VENV)

# Reinstalled only when the dependencies change.
$(DEMO_STAMP): pyproject.toml | $(DEMO_VENV_PY)
	$(DEMO_VENV_PY) -m pip install --disable-pip-version-check --quiet -e ".[example]"
	@touch $@

demo-setup: $(DEMO_STAMP)
	$(DEMO_MANAGE) migrate --noinput
	$(DEMO_MANAGE) seed_demo --base-url $(DEMO_URL)

demo-check: demo-setup
	$(DEMO_MANAGE) check --fail-level WARNING
	$(DEMO_MANAGE) makemigrations --check --dry-run
	$(DEMO_MANAGE) spectacular --validate --fail-on-warn --file /dev/null

demo: demo-setup
	@echo
	@echo "Starting the example project (ASGI, daphne) at $(DEMO_URL)/ - Ctrl+C stops it."
	@echo "  Dashboard   $(DEMO_URL)/  Open it in two windows (one private) and log in"
	@echo "              as owner@example.com in one and as applicant@example.com in the other"
	@echo "              (password demo-pass-123): a request and its approval show up live."
	@echo "  API         $(DEMO_URL)/api/invitation_to_auto_salon  (also /api/auto_salon, /api/salon_role)"
	@echo "  Swagger UI  $(DEMO_URL)/api/doc"
	@echo "  WebSocket   ws://$(DEMO_HOST):$(DEMO_PORT)/ws/api/invitation_to_auto_salon/?token=<access>"
	@echo "  Admin       $(DEMO_URL)/admin/"
	@echo "  Invite page $(DEMO_URL)/invite/<token>  (seed_demo printed a link above; invite e-mails"
	@echo "              are printed here, with their links, while EMAIL_HOST is unset)"
	@echo
	$(DEMO_MANAGE) runserver $(DEMO_HOST):$(DEMO_PORT)

SERVE_WS_PORT ?= 8001

# The page's WebSockets go to the daphne process, on a port of its own (behind a proxy that
# sends /ws/ there, leave WEBSOCKET_URL empty).
serve: export WEBSOCKET_URL ?= ws://$(DEMO_HOST):$(SERVE_WS_PORT)
serve: $(DEMO_STAMP)
	@test -n "$$REDIS_URL" || { echo "make serve needs REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0 make serve): the events cross from the HTTP processes to the WebSocket process over Redis"; exit 2; }
	$(DEMO_MANAGE) migrate --noinput
	$(DEMO_MANAGE) collectstatic --noinput --verbosity 0
	@echo
	@echo "Starting the production topology: HTTP (gunicorn) at $(DEMO_URL)/, WebSockets (daphne)"
	@echo "at $(WEBSOCKET_URL)/ws/..., and a Celery worker with beat."
	@echo "Ctrl+C stops them all. (make demo-setup adds the demo accounts.)"
	@echo
	cd example_project && SERVE_HOST=$(DEMO_HOST) PORT=$(DEMO_PORT) WS_PORT=$(SERVE_WS_PORT) \
		$(DEMO_VENV_PY) serve.py
