# numa-balloon. `make run` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp
# Debian packages of the real tools the tests run (libvirt schema validator, Xen's xl parser,
# docker-compose to validate the compose file, headless Chromium to render /ui).
SYSTEM_PACKAGES := libvirt-clients libxml2-utils libxenmisc4.17 docker-compose chromium \
	fonts-dejavu-core

.PHONY: install run migrate test lint openapi bench system-deps clean fuzz load bench-http demo client

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.lock
	@# the package itself (the `numa-balloon` command), quietly; verbose again if it fails
	$(PY) -m pip install -q --no-deps -e . >/dev/null 2>&1 || $(PY) -m pip install --no-deps -e .
	touch $@

install: $(STAMP)

migrate: install
	$(PY) -m service.cli migrate

run: migrate
	@TOKEN="$$($(PY) -m service.cli admin-token)"; \
	echo ""; \
	echo "  numa-balloon on http://127.0.0.1:$(PORT)   Swagger UI: http://127.0.0.1:$(PORT)/docs"; \
	echo "  admin token: $$TOKEN"; \
	echo ""; \
	NUMA_BALLOON_ADMIN_TOKEN="$$TOKEN" exec $(VENV)/bin/uvicorn service.app:create_app --factory \
		--host 127.0.0.1 --port $(PORT)

# Installs the Debian tools when running as root with apt (CI, fresh machines); elsewhere the
# tests that need them skip locally (and fail under CI=true).
system-deps:
	@if command -v virt-xml-validate >/dev/null && ldconfig -p | grep -q libxlutil && \
		command -v docker-compose >/dev/null && command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq || true) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "note: install $(SYSTEM_PACKAGES) to run the tests that use them"; fi

test: install system-deps
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The demo story without Docker: SQLite in a temp dir, the API and the simulator on localhost.
demo: install
	$(PY) -m demo --local

openapi: install
	$(PY) -m service.cli openapi -o openapi/openapi.json

# The client's pydantic models, regenerated from openapi/openapi.json (a test fails on drift).
client: install
	$(PY) -m numa_balloon_client._codegen

bench: install
	$(PY) -m bench.engine
	$(PY) -m bench.place
	$(PY) -m bench.migration
	$(PY) -m bench.client
	$(PY) -m bench.http

# Schemathesis over every route with many more cases than `make test` runs.
fuzz: install
	NUMA_BALLOON_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-150} $(PY) -m pytest -q tests/reliability/test_fuzz.py

# A bigger load run (PostgreSQL on 127.0.0.1:5432): 2 workers, 32 clients, 30 s, then the audit.
load: install
	$(PY) -m bench.load --workers 2 --clients 32 --seconds 30

bench-http: install
	$(PY) -m bench.http

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
