# Quick start:  make serve   (gateway on http://127.0.0.1:8000, demo mode without an API key)
#               make test    (every test: Python unit + integration, JS client, browser e2e)
#               make cluster (redis-server + 3 replicas + nginx round robin on http://127.0.0.1:8080)
#               make lock          (re-lock after editing pyproject.toml's dependencies; keeps every other pin)
#               make upgrade-lock  (every dependency, the SDK and its bundled CLI included, to its newest
#                                   release, then a fresh .venv from the new lock and the whole suite)
# Installs come only from the lock, requirements/*.txt (pinned, hashed), through scripts/install.sh.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
LOCK_TOOL := uv==0.13.8
LOCK_VENV := .venv-lock
COMPILE = $(LOCK_VENV)/bin/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" pyproject.toml requirements/build.in

.PHONY: serve cluster test test-python test-js bench schema install install-test lock upgrade-lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements/runtime.txt pyproject.toml | $(BIN)/python
	scripts/install.sh runtime $(BIN)/python -e
	touch $@

$(VENV)/.installed-test: requirements/test.txt pyproject.toml | $(BIN)/python
	scripts/install.sh test $(BIN)/python -e
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

$(LOCK_VENV)/bin/uv:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q $(LOCK_TOOL)

lock: $(LOCK_VENV)/bin/uv
	$(COMPILE) --extra test -o requirements/test.txt
	$(COMPILE) -c requirements/test.txt -o requirements/runtime.txt

upgrade-lock: $(LOCK_VENV)/bin/uv
	$(COMPILE) --upgrade --extra test -o requirements/test.txt
	$(COMPILE) -c requirements/test.txt -o requirements/runtime.txt
	rm -rf $(VENV)
	$(MAKE) test

schema: install
	$(BIN)/python -m gateway.wire.schema
