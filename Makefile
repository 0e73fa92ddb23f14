# Quick start:  make serve   (gateway on http://127.0.0.1:8000, demo mode without an API key)
#               make test    (every test: Python unit + integration, JS client, browser e2e)
#               make cluster (redis-server + 3 replicas + nginx round robin on http://127.0.0.1:8080)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: serve cluster test test-python test-js bench schema install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
	scripts/system-deps.sh runtime

install-test: $(VENV)/.installed-test
	scripts/system-deps.sh test

serve: install
	$(BIN)/agent-gateway serve $(ARGS)

# The topology of deploy/docker-compose.yml without Docker: redis-server, 3 gateways, nginx with deploy/nginx.conf.
cluster: install-test
	$(BIN)/python -m tests.support.cluster $(ARGS)

test: install-test
	$(BIN)/python -m pytest -n 2 -q
	$(MAKE) test-js

test-python: install-test
	$(BIN)/python -m pytest -n 2 -q

test-js: install-test
	cd clients/js && npm ci --no-audit --no-fund && npm test

bench: install-test
	$(BIN)/python -m bench.run

schema: install
	$(BIN)/python -m gateway.wire.schema
