# numa-balloon. `make run` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp
# Debian packages of the real tools the tests run (libvirt schema validator, Xen's xl parser,
# docker-compose to validate the compose file, headless Chromium to render /ui).
# libvirt-dev, pkg-config and gcc build the libvirt Python binding of the host agent; curl and jq
# run the README's walk-throughs (tests/test_readme.py); systemd brings systemd-analyze, which
# checks the units in deploy/ (tests/agents/test_units.py).
SYSTEM_PACKAGES := libvirt-clients libxml2-utils libxenmisc4.17 docker-compose chromium \
	fonts-dejavu-core libvirt-dev pkg-config gcc curl jq systemd
LIBVIRT_PYTHON := libvirt-python==12.8.0

.PHONY: install run migrate test test-all lint openapi bench system-deps clean fuzz load bench-http demo client \
	libvirt-binding dist

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The service (the root project), then the pieces of packages/ (the client, the `numa-balloon`
# command, the agents' commands), all editable. Two steps: a root project that still declared the
# commands removes them when it is replaced, and the pieces install them again.
PIECES_EDITABLE := $(addprefix -e packages/,numa-balloon-client numa-balloon-cli \
	numa-balloon-agent numa-balloon-guest)
$(STAMP): requirements.lock pyproject.toml $(wildcard packages/*/pyproject.toml) | $(PY)
	$(PY) -m pip install -q -r requirements.lock
	@# the packages themselves, quietly; verbose again if it fails
	$(PY) -m pip install -q --no-deps -e . >/dev/null 2>&1 || $(PY) -m pip install --no-deps -e .
	$(PY) -m pip install -q --no-deps $(PIECES_EDITABLE) >/dev/null 2>&1 || \
		$(PY) -m pip install --no-deps $(PIECES_EDITABLE)
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
		--host 127.0.0.1 --port $(PORT) --no-proxy-headers

# Installs the Debian tools when running as root with apt (CI, fresh machines); elsewhere the
# tests that need them skip locally (and fail under CI=true).
system-deps:
	@if command -v virt-xml-validate >/dev/null && ldconfig -p | grep -q libxlutil && \
		command -v docker-compose >/dev/null && command -v chromium >/dev/null && \
		pkg-config --exists libvirt && command -v gcc >/dev/null && \
		command -v curl >/dev/null && command -v jq >/dev/null && \
		command -v systemd-analyze >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq || true) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "note: install $(SYSTEM_PACKAGES) to run the tests that use them"; fi

# The host agent's libvirt binding, built against the system's libvirt (after system-deps).
libvirt-binding: install system-deps
	@$(PY) -c 'import libvirt' 2>/dev/null || { pkg-config --exists libvirt && \
		$(PY) -m pip install -q $(LIBVIRT_PYTHON); } || \
		echo "note: install libvirt-dev pkg-config gcc for the libvirt binding"

# `make test`: every check on PostgreSQL, the production database, in parallel (a database per
# xdist worker, cloned from a migrated template). `make test-all`: what `make test` leaves out,
# the SQLite leg of the tests that run on both backends and the long soak rounds (CI runs both).
# One worker more than cores: the tests wait on servers and subprocesses part of the time (on 2
# cores, 3 workers took 5.7 min where 2 took 6.4). TEST_WORKERS=0 runs serially; PYTEST_ARGS
# passes more options (e.g. -x, -k).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
test: install system-deps libvirt-binding
	$(PYTEST) -m "not sqlite and not soak"

test-all: install system-deps libvirt-binding
	$(PYTEST) -m "sqlite or soak"

# A real Linux guest under QEMU (TCG) and two private libvirtds (two hosts), driven by the service,
# the host agents and the guest agent inside it (docs/real-guest.md). As root it installs what it
# needs with apt; var/e2e keeps the Debian kernel, the guest's Python and agent, and the guest
# image. The last line is the headline. Without QEMU from apt: fails under CI=true, skips elsewhere.
.PHONY: e2e
e2e: install
	LIBVIRT_PYTHON='$(LIBVIRT_PYTHON)' $(PY) -m e2e

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The demo story without Docker: SQLite in a temp dir, the API and the simulator on localhost;
# the service stays up with the demo cluster afterwards (Ctrl-C stops it).
# `make demo AGENTS=real`: the real host and guest agents, on libvirt's test driver and sysfs trees.
DEMO_PORT ?= 8080
demo: install $(if $(filter real,$(AGENTS)),libvirt-binding)
	$(PY) -m demo --local --serve --port $(DEMO_PORT) $(if $(AGENTS),--agents $(AGENTS))

openapi: install
	$(PY) -m service.cli openapi -o openapi/openapi.json

# The client's pydantic models, regenerated from openapi/openapi.json (a test fails on drift).
client: install
	$(PY) -m numa_balloon_client._codegen

# Wheels in dist/: the separately installable pieces (packages/README.md: client, CLI, host
# agent, guest agent) and the whole control plane. The pieces build from the top-level package
# directories, so the build's leftovers there are removed.
PIECES := numa-balloon-client numa-balloon-cli numa-balloon-agent numa-balloon-guest
dist: install
	rm -rf dist
	$(PY) -m pip wheel -q --no-deps -w dist $(addprefix packages/,$(PIECES)) .
	rm -rf $(addprefix packages/,$(addsuffix /build,$(PIECES))) \
		$(addsuffix .egg-info,$(subst -,_,$(PIECES)))
	@ls dist

bench: install
	$(PY) -m bench.engine
	$(PY) -m bench.place
	$(PY) -m bench.migration
	$(PY) -m bench.hostile
	$(PY) -m bench.cluster
	$(PY) -m bench.client
	$(PY) -m bench.http
	$(PY) -m bench.waiters

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
