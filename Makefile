# rtsig — the README's two commands (`make run`, `make test`) do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build needs: mysqlclient compiles against the MySQL client headers;
# the tests start a private MariaDB server (mariadbd) for the MySQL config store.
SYSTEM_PACKAGES := default-libmysqlclient-dev pkg-config build-essential mariadb-server

.PHONY: run test bench perf perf-quick clean system-deps venv docs-screenshot

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

test: $(STAMP)
	$(BIN)/python -m pytest

run: $(STAMP)
	@$(BIN)/rtsig demo

bench: $(STAMP)
	$(BIN)/python -m perf.microbench

perf-quick: $(STAMP)
	$(BIN)/python -m perf.harness --quick

perf: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[perf]'
	$(BIN)/python -m perf.harness

# /docs in headless Chromium (Debian's package): a screenshot, and a check that every route shows.
docs-screenshot: $(STAMP)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	$(BIN)/python tools/docs_screenshot.py docs/api-docs.png

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
