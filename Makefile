# The two front-door commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
# Installs are pinned, with hashes, by the lock files; pyproject.toml keeps the ranges (`make lock`).
RUN_LOCK := .ci/requirements.txt
TEST_LOCK := .ci/requirements-test.txt
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: run dev serve test lint format lock install install-test chromium services migrate seed bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: $(RUN_LOCK) pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r $(RUN_LOCK)
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(TEST_LOCK) pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r $(TEST_LOCK)
	$(PIP) --no-deps -e .
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## Re-pin the lock files from the ranges in pyproject.toml (needs the network to the package index)
lock: | $(BIN)/python
	$(PIP) uv
	UV_NO_CONFIG=1 $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml --extra postgres --extra redis -o $(RUN_LOCK)
	UV_NO_CONFIG=1 $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml --extra test -o $(TEST_LOCK)

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

## Run the dashboard on the embedded simulator at http://$(HOST):$(PORT): the production server, the poller and the worker (Procfile)
run: seed
	@$(BIN)/python manage.py ensure_operator
	@echo "Dashboard: http://$(HOST):$(PORT)/"
	HOST=$(HOST) $(BIN)/honcho start --port $(PORT)

## The production server alone (gunicorn, threaded workers; see README "Running in production")
serve: install
	PORT=$(PORT) HOST=$(HOST) $(BIN)/gunicorn --config python:dashboard.gunicorn dashboard.wsgi

## Django's development server with autoreload, on the embedded simulator
dev: seed
	@$(BIN)/python manage.py ensure_operator
	DEBUG=$${DEBUG:-1} PORT=$(PORT) $(BIN)/python manage.py runserver $(HOST):$(PORT)

## Debian's Chromium for the browser tests (installed with apt-get when missing)
chromium:
	@bash .ci/install-chromium

## Debian's PostgreSQL and Redis for the integration tests (installed with apt-get when missing)
services:
	@bash .ci/install-services

## Install everything the tests need, then run them all
test: install-test chromium services
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n auto

## ruff: lint and formatting check
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Upstream calls as the number of viewers grows, and row latency on the production server vs runserver
# Every benchmark runs, even after one that missed its goal (it exits 1); those are named at the end.
BENCHES := viewers live_feed server_load jsonl_split store_list pages freshness results alarms access spend \
	"spend --database postgresql" tokens poller_memory pollers "pollers --env POLL_ACCOUNT_CONCURRENCY=4 --no-kill"
bench: install-test
	@missed=""; for run in $(BENCHES); do \
		set -- $$run; script=$$1; shift; \
		echo "== bench/$$script.py $$*"; \
		$(BIN)/python bench/$$script.py "$$@" || missed="$$missed bench/$$script.py $$*;"; \
	done; \
	if [ -n "$$missed" ]; then echo "make bench: goal missed or failed:$$missed"; exit 1; fi

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-shm db.sqlite3-wal
