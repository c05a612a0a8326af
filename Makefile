# rtsig — the README's two commands (`make run`, `make test`) do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build needs: mysqlclient compiles against the MySQL client headers;
# the tests start a private MariaDB server (mariadbd) for the MySQL config store.
SYSTEM_PACKAGES := default-libmysqlclient-dev pkg-config build-essential mariadb-server

.PHONY: run test bench perf perf-quick clean system-deps venv docs-screenshot evaluate
.PHONY: docker-host image compose-up compose-down test-docker

# Containers (docs/OPERATIONS.md): Debian's client where both exist (the other may need buildx).
DOCKER ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
IMAGE  := rtsig:0.1.0

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | system-deps
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# RTSIG_DOCKER_TEST=1: tests/test_docker_stack.py builds the image and runs the compose stack
# (it installs and starts Docker itself; ~10 min on a fresh machine, ~3 min with a warm cache).
test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy
	RTSIG_DOCKER_TEST=1 $(BIN)/python -m pytest

test-docker: $(STAMP)
	RTSIG_DOCKER_TEST=1 $(BIN)/python -m pytest -s tests/test_docker_stack.py

docker-host:
	@deploy/docker-host.sh ensure

# Base images: pulled, or built from Debian packages where no registry answers.
image: docker-host
	@DOCKER=$(DOCKER) deploy/local-images.sh
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host $(shell p=$$(python3 -m pip config get global.index-url 2>/dev/null) && echo --build-arg PIP_INDEX_URL=$$p) -t $(IMAGE) .

compose-up: image
	@DOCKER=$(DOCKER) deploy/compose.sh up

compose-down:
	@DOCKER=$(DOCKER) deploy/compose.sh down

run: $(STAMP)
	@$(BIN)/rtsig demo

bench: $(STAMP)
	$(BIN)/python -m perf.microbench

perf-quick: $(STAMP)
	$(BIN)/python -m perf.harness --quick

perf: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[perf]'
	$(BIN)/python -m perf.harness

# `rtsig evaluate` on the sample feed and on the real captures beside this checkout (when there):
# tables on stdout, JSON reports and PNG plots in var/evaluation/ (docs/EVALUATION.md).
REAL_DATA ?= ../shared/data/real
evaluate: $(STAMP)
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[perf]'
	@[ -f var/sample.jsonl ] || $(BIN)/python -c "from rtsig.synthetic import write_feed; write_feed('var/sample.jsonl')"
	$(BIN)/rtsig evaluate var/sample.jsonl --out var/evaluation/sample --strategies-only
	@if ls $(REAL_DATA)/*.txt >/dev/null 2>&1; then \
	  echo "TRADING_SYMBOLS='*' SIGNAL_MARKETS=spot,usdm $(BIN)/rtsig evaluate $(REAL_DATA)/*.txt --out var/evaluation/real"; \
	  TRADING_SYMBOLS='*' SIGNAL_MARKETS=spot,usdm $(BIN)/rtsig evaluate $(REAL_DATA)/*.txt --out var/evaluation/real; \
	else echo "no real captures in $(REAL_DATA): skipped"; fi

# /docs in headless Chromium (Debian's package): a screenshot, and a check that every route shows.
docs-screenshot: $(STAMP)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	$(BIN)/python tools/docs_screenshot.py docs/api-docs.png

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
