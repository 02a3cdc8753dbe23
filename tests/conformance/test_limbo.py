"""x509-limbo through ``certway-limbo``: same outcomes as ``cryptography``, all CRL cases pass.

The harness runs once over the whole vector file (denial-of-service testcases go through its
bounded child-process path). Then:

* every testcase without the ``has-crl`` feature must give the outcome that ``cryptography``'s
  own verifier gives on the same inputs (``reference_outcome`` below, with the same skip rules);
* every ``crl::`` testcase must pass (actual == expected).

Known engine bugs are listed in ``ENGINE_BUGS_*`` below; their single assertion is marked as
an expected failure (strict: it must start passing once the engine is fixed).

Run as a script (``python test_limbo.py < testcase.json``) it prints ``reference_outcome`` for
one testcase: the bounded way to evaluate denial-of-service testcases with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "conformance" / "x509-limbo.json"
SUMMARY = REPO_ROOT / "test-artifacts" / "limbo-summary.json"
TIMEOUT = 5.0

# Testcases without CRLs where certway's engine and cryptography's verifier disagree because
# of a bug in certway.trust (to be fixed there; these tests then start passing).
ENGINE_BUGS_VS_CRYPTOGRAPHY: dict[str, str] = {}

# crl:: testcases that fail because of a bug in certway.trust (to be fixed there).
ENGINE_BUGS_CRL: dict[str, str] = {}


def _peer_name(entry: dict[str, Any]) -> x509.GeneralName:
    kind, value = entry["kind"], entry["value"]
    if kind == "DNS":
        return x509.DNSName(value)
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    return x509.RFC822Name(value)


def reference_outcome(testcase: dict[str, Any]) -> str:
    """SUCCESS / FAILURE from cryptography's verifier alone, as its own limbo tests drive it."""
    try:
        trusted = [x509.load_pem_x509_certificate(p.encode()) for p in testcase["trusted_certs"]]
        intermediates = [
            x509.load_pem_x509_certificate(p.encode()) for p in testcase["untrusted_intermediates"]
        ]
        peer = x509.load_pem_x509_certificate(testcase["peer_certificate"].encode())
    except ValueError:
        return "FAILURE"
    when = testcase["validation_time"]
    at = dt.datetime.fromisoformat(when) if when is not None else dt.datetime.now(dt.UTC)
    builder = (
        PolicyBuilder()
        .store(Store(trusted))
        .time(at)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.webpki_defaults_ee(),
        )
    )
    if testcase["max_chain_depth"] is not None:
        builder = builder.max_chain_depth(testcase["max_chain_depth"])
    try:
        if testcase["validation_kind"] == "SERVER":
            verifier = builder.build_server_verifier(_peer_name(testcase["expected_peer_name"]))
            verifier.verify(peer, intermediates)
            return "SUCCESS"
        client = builder.build_client_verifier().verify(peer, intermediates)
    except (VerificationError, ValueError):
        return "FAILURE"
    expected = [_peer_name(p) for p in testcase["expected_peer_names"] or []]
    if expected and expected != (client.subjects or []):
        return "FAILURE"
    return "SUCCESS"


def bounded_reference_outcome(testcase: dict[str, Any]) -> str:
    """``reference_outcome`` in a child process, FAILURE when it runs out of time."""
    try:
        done = subprocess.run(
            [sys.executable, __file__],
            input=json.dumps(testcase),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return "FAILURE"
    return done.stdout.strip()


if __name__ == "__main__":
    print(reference_outcome(json.load(sys.stdin)))
    sys.exit(0)
