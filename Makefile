# Two commands matter: `make run` (embedded demo, nothing to install) and `make test`.
# See docs/architecture.md "Run modes".

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Reinstalled only when a requirements file changes.
INSTALLED := $(VENV)/.installed
PORT ?= 8000
PYTEST_ARGS ?=
# pytest-xdist workers of `make test`, each on its own database, vhost, Redis db and ports.
TEST_WORKERS ?= 2
CHAOS_ARGS ?=
OPS_REPORT_ARGS ?=

STACK_DATABASE_URL := postgres://postgres@127.0.0.1:5432/oms
STACK_BROKER_URL := amqp://guest:guest@127.0.0.1:5672//
STACK_REDIS_URL := redis://127.0.0.1:6379/0

.PHONY: help install run stack split services test pytest lint format clean bench chaos screenshots ops-report event-schemas

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)

$(INSTALLED): requirements/base.txt requirements/dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/dev.txt
	touch $@

install: $(INSTALLED)  ## Create .venv and install the requirements (when they changed)

run: $(INSTALLED)  ## Embedded mode: SQLite + in-process bus, on 127.0.0.1:$PORT (default 8000)
	@# Not echoed: like make stack's, this output is JSON lines only.
	@mkdir -p var
	@unset DATABASE_URL BROKER_URL REDIS_URL; \
	export DJANGO_SETTINGS_MODULE=config.settings.local; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py seed_demo; \
	exec $(PY) manage.py serve_embedded 127.0.0.1:$(PORT)

services:  ## Start the local PostgreSQL, RabbitMQ and Redis that are down
	bash deploy/ensure_services.sh

stack: $(INSTALLED)  ## Stack mode on the local services: web, consumers, worker (with beat and the relay)
	@# Not echoed: the output of `make stack` is JSON lines only (docs/operations.md "Logs").
	@mkdir -p var
	@export DATABASE_URL="$${DATABASE_URL:-$(STACK_DATABASE_URL)}"; \
	export BROKER_URL="$${BROKER_URL:-$(STACK_BROKER_URL)}"; \
	export REDIS_URL="$${REDIS_URL:-$(STACK_REDIS_URL)}"; \
	export DJANGO_SETTINGS_MODULE="$${DJANGO_SETTINGS_MODULE:-config.settings.local}"; \
	export PORT=$(PORT); \
	bash deploy/ensure_services.sh; \
	$(PY) deploy/ensure_database.py; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py declare_topology; \
	$(PY) manage.py seed_demo; \
	exec $(PY) deploy/run_stack.py

split: $(INSTALLED)  ## Each context as its own service: orders 8081, payments 8082, inventory 8083, queries 8084
	@# Not echoed: JSON lines only, as make stack. Set-up as the database owner, then each
	@# service runs as its own PostgreSQL role (docs/architecture.md "Moving a context out").
	@mkdir -p var
	@export DATABASE_URL="$${DATABASE_URL:-$(STACK_DATABASE_URL)}"; \
	export BROKER_URL="$${BROKER_URL:-$(STACK_BROKER_URL)}"; \
	export REDIS_URL="$${REDIS_URL:-$(STACK_REDIS_URL)}"; \
	export DJANGO_SETTINGS_MODULE="$${DJANGO_SETTINGS_MODULE:-config.settings.local}"; \
	unset OMS_SERVICE; \
	bash deploy/ensure_services.sh; \
	$(PY) deploy/ensure_database.py; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py declare_topology; \
	$(PY) manage.py seed_demo; \
	$(PY) manage.py create_service_roles; \
	exec $(PY) deploy/run_stack.py --split

test: $(INSTALLED) services  ## The whole suite on the local services (TEST_WORKERS in parallel), then the linters
	@# Exit code 5 is "no test selected": PYTEST_ARGS may narrow the run to one of the two parts.
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(MAKE) --no-print-directory lint

pytest: $(INSTALLED) services  ## Only the test suite (PYTEST_ARGS="-k ..." to narrow it)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)  ## ruff (lint + format check), import-linter contracts, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

event-schemas: $(INSTALLED)  ## Add a new event type or schema version to eventstore/event_schemas.json (never rewrites one)
	$(PY) manage.py event_schemas --write

screenshots: $(INSTALLED)  ## Web app screenshots (desktop, phone) into docs/screenshots/ (needs chromium, chromium-driver)
	$(PY) -m tests.web.screenshots docs/screenshots

format: $(INSTALLED)  ## Fix what ruff can fix and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(INSTALLED) services  ## Throughput benchmark (BENCH_SECONDS=5 for a short run); report in bench/results/
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "make bench needs wrk (Debian package wrk) and pgbench/pg_dump (postgresql-client)"; exit 1; }
	$(PY) bench/run.py

chaos: $(INSTALLED) services  ## Chaos suite on the stack mode (CHAOS_ARGS="--short" ...); report in chaos/results/, exit 1 on any loss
	$(PY) -m chaos $(CHAOS_ARGS)

ops-report: $(INSTALLED) services  ## Issue 12's figures on a real `make stack` run (set DATABASE_URL etc. to spare ones; OPS_REPORT_ARGS="--out f.md")
	$(PY) deploy/ops_report.py $(OPS_REPORT_ARGS)

clean:  ## Remove the embedded database, collected static files and caches (not .venv)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
