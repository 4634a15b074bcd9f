# The two front-door commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test install install-test chromium migrate seed bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

## Run the dashboard on the embedded simulator at http://$(HOST):$(PORT)
run: seed
	@$(BIN)/python manage.py ensure_operator
	@echo "Dashboard: http://$(HOST):$(PORT)/"
	PORT=$(PORT) $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

## Debian's Chromium for the browser tests (installed with apt-get when missing)
chromium:
	@bash .ci/install-chromium

## Install everything the tests need, then run them all
test: install-test chromium
	$(BIN)/python -m pytest

## Upstream calls as the number of viewers grows (prints ratios against one viewer)
bench: install
	$(BIN)/python bench/viewers.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-shm db.sqlite3-wal
