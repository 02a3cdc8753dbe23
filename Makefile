# certway — the two commands a user needs:
#   make serve   sets up .venv and runs `certway serve` on ./certway-data (SQLite, temporary CA)
#   make test    sets up .venv + Debian packages and runs lint, types and the whole test suite
#   make test-quick  lint, types and the tests without real external peers or slow cases
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test test-quick lint typecheck pytest pytest-quick deps-system bench clean

DATA_DIR ?= ./certway-data

# Debian packages the tests drive as real peers (idempotent: only installs what is missing).
deps-system:
	@scripts/ensure-debian-packages.sh openssl chromium kamailio kamailio-tls-modules

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) deps-system
	$(VENV)/bin/pytest -n 2 -q

test: lint typecheck pytest

# The quick lane: no interop (openssl, kamailio, chromium, pkilint as real peers) and no slow
# tests (PKITS, x509-limbo, crash/kill tests); `make test` runs everything.
pytest-quick: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q -m "not interop and not slow"

test-quick: lint typecheck pytest-quick

serve: $(STAMP)
	$(VENV)/bin/certway --data-dir $(DATA_DIR) serve

bench: $(STAMP) deps-system
	$(PY) bench/bench_core.py
	$(PY) bench/bench_trust.py
	$(PY) bench/bench_sni.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
