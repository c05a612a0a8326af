# rtsig — the README's two commands (`make run`, `make test`) do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build needs: mysqlclient compiles against the MySQL client headers.
SYSTEM_PACKAGES := default-libmysqlclient-dev pkg-config build-essential

.PHONY: run test bench perf perf-quick clean system-deps venv

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
