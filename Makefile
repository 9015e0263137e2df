# labelgrid: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/labelgrid/v1/*.proto)

NODE_STAMP := clients/node/node_modules/.installed
WEB_STAMP := clients/web/node_modules/.installed

PEER := bench/.venv-superintendent

.PHONY: venv protos run test lint clean node-deps web-deps web compose-up compose-down bench

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

## The whole stack on ./labelgrid.db (SQLite): queue service on 127.0.0.1:50051 (gRPC) and
## http://127.0.0.1:8866/ (the labelling web app), trainer on 127.0.0.1:50052, demo digits
run: $(STAMP)
	$(VENV)/bin/labelgrid stack

## Node client dependencies and buf (from npm), when npm is on this machine.
node-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) $(NODE_STAMP); \
	else echo "npm not found: the Node client and buf tests will be skipped"; fi

$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## The web app's npm packages (protoc-gen-es, buf, connect-web, vite), when npm is here: the
## tests check that clients/web/src/gen is what the protos generate today.
web-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) $(WEB_STAMP); \
	else echo "npm not found: the web app's generated-code test will be skipped"; fi

$(WEB_STAMP): clients/web/package.json clients/web/package-lock.json
	cd clients/web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

## Rebuild the labelling web app: TypeScript from protos/ (buf + protoc-gen-es) into
## clients/web/src/gen, then vite bundles it into queue_service/web/static/ (both committed).
web: $(WEB_STAMP)
	cd clients/web && npm run gen && npm run check && npm run build

## docker compose deployment (PostgreSQL, queue, trainer, labelling page); needs a Docker engine.
compose-up:
	test -f .env || cp .env.example .env
	docker compose --env-file .env -f docker/docker-compose.yml up -d --build

compose-down:
	docker compose --env-file .env -f docker/docker-compose.yml down

## The suite runs on PYTEST_WORKERS pytest-xdist workers (`make test PYTEST_WORKERS=0`: one
## process). Each worker has its own throwaway PostgreSQL; with --dist loadgroup,
## tests/conftest.py keeps tests/test_readme.py (its `make run` stack on the README's fixed
## ports) and tests/test_installs.py whole on one worker (ONE_WORKER).
PYTEST_WORKERS ?= 2

test: $(STAMP) node-deps web-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

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
