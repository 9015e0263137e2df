# labelgrid: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/labelgrid/v1/*.proto)
STUBS_OUT := clients/python

.PHONY: venv protos run test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Regenerate the committed Python stubs from protos/ (tests fail if they are stale).
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(STUBS_OUT) --pyi_out=$(STUBS_OUT) \
		--grpc_python_out=$(STUBS_OUT) $(PROTOS)

## The whole stack on ./labelgrid.db (SQLite): queue service on 127.0.0.1:50051, trainer on
## 127.0.0.1:50052, and the labelling page for the demo digits on http://127.0.0.1:8866/
run: $(STAMP)
	$(VENV)/bin/labelgrid stack

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
