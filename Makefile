# certway — the two commands a user needs:
#   make serve   sets up .venv (run-time packages only), runs `certway serve` on ./certway-data
#   make test    sets up .venv + Debian packages and runs lint, types and the whole test suite
#   make test-quick  lint, types and the tests without real external peers or slow cases
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: serve test test-quick lint typecheck pytest pytest-quick deps-system deps-sslyze bench clean

DATA_DIR ?= ./certway-data

# Debian packages the tests drive as real peers (idempotent: only installs what is missing).
deps-system:
	@scripts/ensure-debian-packages.sh openssl chromium kamailio kamailio-tls-modules softhsm2 rsyslog rsyslog-gnutls pebble lego postgresql slapd ldap-utils

# sslyze (tests/interop/test_sslyze.py) in an environment of its own: it pins a cryptography
# older than certway's path validator needs.
SSLYZE_VENV := .venv-sslyze
deps-sslyze: $(SSLYZE_VENV)/.installed
$(SSLYZE_VENV)/.installed: tests/interop/sslyze-requirements.txt
	@test -x $(SSLYZE_VENV)/bin/python || $(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install --quiet -r tests/interop/sslyze-requirements.txt
	@cp tests/interop/sslyze-requirements.txt $@

# Two stamps: `make serve` installs only what certway needs at run time; the test tools
# (pytest, ruff, mypy, ...) come with the first `make test`.
$(RUNTIME_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) deps-system deps-sslyze
	$(VENV)/bin/pytest -n 2 -q

test: lint typecheck pytest

# The quick lane: no interop (openssl, kamailio, chromium, pkilint as real peers) and no slow
# tests (PKITS, x509-limbo, crash/kill tests); `make test` runs everything.
pytest-quick: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q -m "not interop and not slow"

test-quick: lint typecheck pytest-quick

serve: $(RUNTIME_STAMP)
	$(VENV)/bin/certway --data-dir $(DATA_DIR) serve

bench: $(STAMP) deps-system
	$(PY) bench/bench_core.py
	$(PY) bench/bench_trust.py
	$(PY) bench/bench_sni.py
	$(PY) bench/bench_token.py
	@scripts/ensure-debian-packages.sh golang-cfssl  # the baseline of bench_api_sign.py
	$(PY) bench/bench_api_sign.py
	$(PY) bench/bench_cluster.py
	$(PY) bench/bench_acme_server.py

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) .venv-sslyze.lock .pytest_cache .mypy_cache .ruff_cache
