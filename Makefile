# labelgrid: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/labelgrid/v1/*.proto)

NODE_STAMP := clients/node/node_modules/.installed

PEER := bench/.venv-superintendent

.PHONY: venv protos run test lint clean node-deps compose-up compose-down bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Regenerate the contract package protos/python/labelgrid_proto from protos/ (a test fails
## if the committed stubs are stale).
protos: $(STAMP)
	$(PY) protos/generate.py

## The whole stack on ./labelgrid.db (SQLite): queue service on 127.0.0.1:50051, trainer on
## 127.0.0.1:50052, and the labelling page for the demo digits on http://127.0.0.1:8866/
run: $(STAMP)
	$(VENV)/bin/labelgrid stack

## Node client dependencies and buf (from npm), when npm is on this machine.
node-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) $(NODE_STAMP); \
	else echo "npm not found: the Node client and buf tests will be skipped"; fi

$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## docker compose deployment (PostgreSQL, queue, trainer, labelling page); needs a Docker engine.
compose-up:
	test -f .env || cp .env.example .env
	docker compose --env-file .env -f docker/docker-compose.yml up -d --build

compose-down:
	docker compose --env-file .env -f docker/docker-compose.yml down

test: $(STAMP) node-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

## Benchmarks side by side with superintendent 0.6.0 (its own venv); writes bench/results/.
bench: $(STAMP) $(PEER)/.installed
	$(PY) -m bench.throughput --peer-python $(PEER)/bin/python

$(PEER)/.installed:
	$(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install -q superintendent==0.6.0 sqlmodel==0.0.8 'sqlalchemy<1.4.42' \
		'pydantic<2' psycopg2-binary
	touch $(PEER)/.installed

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
