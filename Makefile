# Every target creates (or reuses) the local virtualenv, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Migrate DATABASE_URL, or with none set an embedded throwaway PostgreSQL (ARGS=--keep keeps it).
demo: $(STAMP)
	$(BIN)/crm-schema demo $(ARGS)

# Real PostgreSQL: CRM_TEST_DATABASE_URL if set, otherwise an embedded server.
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The seed's performance promises at scale (BENCH_SCALE=1: a million orders); writes
# docs/benchmarks.md. Timings live here, never in the tests.
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict crm_schema

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	-$(BIN)/crm-schema demo --stop 2>/dev/null
	rm -rf $(VENV) .crm-demo .crm-bench dist build .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
