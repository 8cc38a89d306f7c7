# Every target does its own set-up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3

# The two LiteLLM releases every change is tested on: the newest (the default
# environment, what `pip install` gives a new user) and the floor we support.
LITELLM_NEWEST := 1.110.2
LITELLM_FLOOR := 1.108.7
EXTRAS := dev,redis,prometheus,proxy

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FLOOR_VENV := .venv-floor
FLOOR_BIN := $(FLOOR_VENV)/bin
FLOOR_STAMP := $(FLOOR_VENV)/.installed-stamp

# Never download LiteLLM's cost map; tests, demo and bench are offline.
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: install install-floor test lint demo bench clean redis-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(FLOOR_BIN)/python:
	$(PYTHON) -m venv $(FLOOR_VENV)

# The stamp names the LiteLLM version, so changing a pin above reinstalls.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" "litellm==$(LITELLM_NEWEST)"
	touch $@

$(FLOOR_STAMP): pyproject.toml Makefile | $(FLOOR_BIN)/python
	$(FLOOR_BIN)/python -m pip install --quiet --upgrade pip
	$(FLOOR_BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" "litellm==$(LITELLM_FLOOR)"
	touch $@

install: $(STAMP)

install-floor: $(FLOOR_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Redis tests start their own redis-server; install Debian's when missing and
# we may (CI runs as root). Elsewhere they skip, and fail under CI=true.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian package) for the Redis tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server not found: the Redis tests will skip (apt-get install redis-server)"; \
	  fi; }

# The whole suite on the newest LiteLLM, then again on the floor; coverage is
# measured across both, so each version's branch of the compatibility layer counts.
test: lint redis-server $(FLOOR_STAMP)
	rm -f .coverage .coverage.*
	@echo "== the whole suite on litellm $(LITELLM_NEWEST) (newest, the default environment)"
	$(BIN)/coverage run -m pytest
	@echo "== the whole suite on litellm $(LITELLM_FLOOR) (the floor)"
	$(FLOOR_BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Figures are ratios and counts measured side by side; never asserted in tests.
BENCH_STAMP := $(VENV)/.bench-stamp
FLOOR_BENCH_STAMP := $(FLOOR_VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS),bench]" "litellm==$(LITELLM_NEWEST)"
	touch $@

$(FLOOR_BENCH_STAMP): $(FLOOR_STAMP)
	$(FLOOR_BIN)/python -m pip install --quiet -e ".[$(EXTRAS),bench]" "litellm==$(LITELLM_FLOOR)"
	touch $@

bench: $(BENCH_STAMP) $(FLOOR_BENCH_STAMP)
	$(BIN)/python bench/run.py --floor-python $(FLOOR_BIN)/python
	$(BIN)/python bench/plot.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
