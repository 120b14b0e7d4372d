# numa-balloon: the API (and, with another command, the demo simulator).
# Settings come only from the environment (NUMA_BALLOON_*); nothing is baked into the image.

# -- build: the runtime dependencies of pyproject.toml, pinned by the lock, into a virtualenv ---
# (the lock also pins the dev tools; `-c` takes only the versions of what the package needs)
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY service ./service
# the client too (its own distribution, packages/numa-balloon-client): the demo simulator
# speaks through it
COPY numa_balloon_client ./numa_balloon_client
COPY packages/numa-balloon-client ./packages/numa-balloon-client
RUN /opt/venv/bin/pip install -c requirements.lock . ./packages/numa-balloon-client

# -- runtime: the venv and the code only, as an unprivileged user ------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin numa
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY migrations ./migrations
COPY service ./service
COPY demo ./demo
USER numa
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/readyz', timeout=2)"]
# Migrations are idempotent (Alembic to head), so every replica may run them; compose also runs
# them once in a dedicated service first. --no-proxy-headers: the service itself decides whose
# X-Forwarded-For to believe (NUMA_BALLOON_TRUSTED_PROXIES, none by default; docs/security.md).
CMD ["sh", "-c", "python -m service.cli migrate && exec uvicorn service.app:create_app --factory --host 0.0.0.0 --port \"$PORT\" --no-proxy-headers"]
