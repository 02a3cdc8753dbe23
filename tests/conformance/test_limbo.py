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
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
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
# of a bug in certway.trust (to be fixed there; the strict xfail then tells us to drop the entry).
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _reference_outcome(testcase)


def _reference_outcome(testcase: dict[str, Any]) -> str:
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


# -- the harness run and the assertions ------------------------------------------------------
def _load_vectors() -> list[dict[str, Any]]:
    if not VECTORS.is_file():
        return []
    return list(json.loads(VECTORS.read_text(encoding="utf-8"))["testcases"])


TESTCASES = _load_vectors()
BY_ID = {t["id"]: t for t in TESTCASES}
pytestmark = pytest.mark.skipif(not TESTCASES, reason=f"x509-limbo vectors not found at {VECTORS}")


def _param(testcase_id: str, bugs: dict[str, str]) -> Any:
    marks = (
        [pytest.mark.xfail(strict=True, reason=bugs[testcase_id])] if testcase_id in bugs else []
    )
    return pytest.param(testcase_id, id=testcase_id.replace("::", "/"), marks=marks)


WITHOUT_CRL = [
    _param(t["id"], ENGINE_BUGS_VS_CRYPTOGRAPHY)
    for t in TESTCASES
    if "has-crl" not in t["features"]
]
CRL_CASES = [_param(t["id"], ENGINE_BUGS_CRL) for t in TESTCASES if t["id"].startswith("crl::")]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """One run of ``certway-limbo`` over the whole vector file, in-process."""
    from certway.conformance.limbo import main

    output = tmp_path_factory.mktemp("limbo") / "results.json"
    started = time.monotonic()
    assert main([str(VECTORS), "--output", str(output), "--quiet"]) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 100, f"the suite took {elapsed:.0f} s (budget: under 2 minutes)"
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert document["harness"] == "certway"
    return {r["id"]: r for r in document["results"]}


def test_every_testcase_has_a_result(results: dict[str, dict[str, str]]) -> None:
    assert list(results) == [t["id"] for t in TESTCASES]
    for result in results.values():
        assert result["actual_result"] in {"SUCCESS", "FAILURE", "SKIPPED"}
        assert result["context"]


@pytest.mark.parametrize("testcase_id", WITHOUT_CRL)
def test_same_outcome_as_cryptography(results: dict[str, dict[str, str]], testcase_id: str) -> None:
    from certway.conformance.limbo import skip_reason

    testcase = BY_ID[testcase_id]
    ours = results[testcase_id]
    reason = skip_reason(testcase)
    if ours["actual_result"] == "SKIPPED":
        assert reason is not None  # skipped by the shared rules: excluded on both sides
        return
    assert reason is None
    if "denial-of-service" in testcase["features"]:
        theirs = bounded_reference_outcome(testcase)
    else:
        theirs = reference_outcome(testcase)
    assert ours["actual_result"] == theirs, ours["context"]


@pytest.mark.parametrize("testcase_id", CRL_CASES)
def test_crl_testcase_passes(results: dict[str, dict[str, str]], testcase_id: str) -> None:
    ours = results[testcase_id]
    assert ours["actual_result"] == BY_ID[testcase_id]["expected_result"], ours["context"]


def test_denial_of_service_testcases_are_bounded() -> None:
    """The child process is killed when it runs out of time, and reported as FAILURE."""
    from certway.conformance.limbo import evaluate_bounded

    testcase = next(t for t in TESTCASES if "denial-of-service" in t["features"])
    started = time.monotonic()
    outcome = evaluate_bounded(testcase, timeout=0.001)
    assert (outcome.actual_result, outcome.context) == ("FAILURE", "timed out after 0.001 s")
    assert time.monotonic() - started < 30


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from certway.conformance.limbo import main

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main([str(broken)]) == 2
    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("certway-limbo: cannot read") for line in err)


def test_only_selects_testcases(capsys: pytest.CaptureFixture[str]) -> None:
    from certway.conformance.limbo import main

    assert main([str(VECTORS), "--only", "crl::", "--quiet"]) == 0
    captured = capsys.readouterr()
    ids = [r["id"] for r in json.loads(captured.out)["results"]]
    assert ids and all("crl::" in i for i in ids)
    assert "testcases:" in captured.err


def _counts(results: dict[str, dict[str, str]], ids: list[str]) -> dict[str, int]:
    counts = {"total": len(ids), "pass": 0, "fail": 0, "skipped": 0}
    for testcase_id in ids:
        actual = results[testcase_id]["actual_result"]
        if actual == "SKIPPED":
            counts["skipped"] += 1
        elif actual == BY_ID[testcase_id]["expected_result"]:
            counts["pass"] += 1
        else:
            counts["fail"] += 1
    return counts


def test_summary(results: dict[str, dict[str, str]]) -> None:
    """Pass/skip/fail counts: printed (pytest -s) and written to test-artifacts/."""
    all_ids = list(results)
    crl_ids = [i for i in all_ids if i.startswith("crl::")]
    summary = {
        "vectors": str(VECTORS.name),
        "overall": _counts(results, all_ids),
        "crl": _counts(results, crl_ids),
        "mismatches_vs_expected": sorted(
            i
            for i in all_ids
            if results[i]["actual_result"] not in {"SKIPPED", BY_ID[i]["expected_result"]}
        ),
        "known_engine_bugs": sorted([*ENGINE_BUGS_CRL, *ENGINE_BUGS_VS_CRYPTOGRAPHY]),
    }
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    overall, crl = summary["overall"], summary["crl"]
    print(
        f"\nx509-limbo: {overall['total']} testcases: {overall['pass']} pass, "
        f"{overall['fail']} fail, {overall['skipped']} skipped; crl:: {crl['pass']} pass, "
        f"{crl['fail']} fail, {crl['skipped']} skipped (written to {SUMMARY})"
    )
    assert overall["total"] == len(TESTCASES)


if __name__ == "__main__":
    print(reference_outcome(json.load(sys.stdin)))
    sys.exit(0)
