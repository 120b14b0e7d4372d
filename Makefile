# numa-balloon. `make run` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp
# Debian packages of the real tools the export tests run (libvirt schema validator, Xen's xl parser).
SYSTEM_PACKAGES := libvirt-clients libxml2-utils libxenmisc4.17

.PHONY: install run migrate test test-fast lint openapi bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.lock
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
	@if command -v virt-xml-validate >/dev/null && ldconfig -p | grep -q libxlutil; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq || true) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "note: install $(SYSTEM_PACKAGES) to run the export validator tests"; fi

test: install system-deps
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check service tests bench migrations
	$(VENV)/bin/mypy service

openapi: install
	$(PY) -m service.cli openapi -o openapi/openapi.json

bench: install
	$(PY) -m bench.engine
	$(PY) -m bench.place

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
