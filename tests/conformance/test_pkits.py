"""NIST PKITS (sections 4.1-4.16) through ``validate()`` with the ``rfc5280`` profile.

Every row of ``pkits_cases.json`` (one per PKITS test and per input setting the PKITS
description gives) is validated the way a UC peer's client certificate is, with the row's
RFC 5280 §6.1.1 inputs, every CRL of the test handed in, and a policy that requires a current
CRL for every certificate below the trust anchor. The verdict must be the published one.

Known gaps of the engine are listed in ``KNOWN_ENGINE_GAPS``: a strict expected failure, allowed
only for a valid-expected row that OpenSSL gets wrong as well (``openssl_ok`` in the table,
written by ``make_pkits_openssl_reference.py``). An invalid-expected row that is accepted is
always a plain failure.

A summary per section (rows, passed, failed) is written to ``test-artifacts/pkits-summary.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).resolve().parent / "pkits_cases.json"
SUMMARY = REPO_ROOT / "test-artifacts" / "pkits-summary.json"
VALIDATION_TIME = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
"""PKITS certificates and CRLs are valid from 2010 to 2030 unless a test says otherwise."""

KNOWN_ENGINE_GAPS: dict[str, str] = {
    "4.1.5": (
        "the end entity's DSA key inherits its parameters from the issuer: cryptography cannot "
        "load such a certificate, so it cannot be handed to validate()"
    ),
}
"""Row id → why the engine does not (yet) get it right. Valid-expected rows OpenSSL fails only."""

OPEN_CRL_WORK: dict[str, str] = {}
"""Rows that fail until the trust engine's CRL processing handles them (RFC 5280 §6.3:
scope, indirect and delta CRLs, separate CRL signers): none left. Strict: an entry must be
removed as soon as its row passes. An invalid row listed here would be accepted today: a
real gap, listed so that it is seen, not excused."""

DELIBERATE: dict[str, str] = {
    "4.1.4": "a DSA-1024 signature with SHA-1: refused by the weak-algorithm policy on purpose",
}
"""Valid-expected rows refused on purpose (weak algorithms): the test asserts the refusal."""


def _pkits_dir() -> Path | None:
    try:
        import cryptography_vectors
    except ImportError:
        return None
    path = Path(cryptography_vectors.__file__).resolve().parent / "x509" / "PKITS_data"
    return path if path.is_dir() else None


DATA = _pkits_dir()
DOCUMENT: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DOCUMENT["cases"]
BY_ID = {case["id"]: case for case in CASES}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        DATA is None, reason="the cryptography_vectors package (test extra) is not installed"
    ),
]


class _Unloadable(Exception):
    """A PKITS file ``cryptography`` cannot parse: the engine cannot be asked about it."""


@cache
def _certificate(name: str) -> x509.Certificate:
    assert DATA is not None
    with warnings.catch_warnings():  # PKITS 4.4.14/15 use a negative serial number on purpose
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate((DATA / "certs" / name).read_bytes())
        except ValueError as exc:
            raise _Unloadable(f"{name} cannot be loaded: {exc}") from None


@cache
def _crl(name: str) -> x509.CertificateRevocationList:
    assert DATA is not None
    try:
        return x509.load_der_x509_crl((DATA / "crls" / name).read_bytes())
    except ValueError as exc:
        raise _Unloadable(f"{name} cannot be loaded: {exc}") from None


@dataclass(frozen=True, slots=True)
class Outcome:
    valid: bool
    detail: str


def run_case(case: dict[str, Any]) -> Outcome:
    """Validate one row through the engine's public API with the row's PKITS inputs."""
    from certway.trust.anchors import TrustSnapshot
    from certway.trust.policy import RevocationPolicy, Scope
    from certway.trust.validate import PkixInputs, Profile, Purpose, ValidationOptions, validate

    try:
        anchor = _certificate(DOCUMENT["trust_anchor"])
        leaf = _certificate(case["end_entity"])
        others = [_certificate(name) for name in [*case["path"], *case["other_certs"]]]
        crls = [_crl(name) for name in case["crls"]]
    except _Unloadable as exc:
        return Outcome(False, f"not validated: {exc}")
    inputs = case.get("inputs") or {}
    pkix = PkixInputs(
        **{
            key: (frozenset(value) if key == "initial_policy_set" else value)
            for key, value in inputs.items()
        }
    )
    options = ValidationOptions(
        profile=Profile.RFC5280, purpose=Purpose.CLIENT, name=None, check_eku=True, pkix=pkix
    )
    policy = RevocationPolicy(ocsp=False, cdp=False, crl=True, scope=Scope.ALL, require_crl=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        result = validate(
            leaf,
            others,
            trust=TrustSnapshot.of([anchor]),
            at=VALIDATION_TIME,
            options=options,
            policy=policy,
            crls=crls,
        )
    if result.valid:
        return Outcome(True, "valid")
    return Outcome(False, f"{result.code} (certificate {result.failed_index}): {result.reason}")


def _safely(run: Callable[[dict[str, Any]], Outcome], case: dict[str, Any]) -> Outcome:
    """One row's outcome; an exception from the engine is that row's failure, not the run's."""
    try:
        return run(case)
    except ImportError as exc:  # the engine API itself is missing: every row fails
        return Outcome(False, f"engine API unavailable: {exc}")
    except Exception as exc:
        return Outcome(False, f"validate() raised {type(exc).__name__}: {exc}")


@cache
def outcome_of(case_id: str) -> Outcome:
    """One row validated once per test process (the summary reuses the rows' outcomes)."""
    return _safely(run_case, BY_ID[case_id])


def _param(case: dict[str, Any]) -> Any:
    marks = []
    if case["id"] in KNOWN_ENGINE_GAPS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_ENGINE_GAPS[case["id"]]))
    if case["id"] in OPEN_CRL_WORK:
        marks.append(pytest.mark.xfail(strict=True, reason=OPEN_CRL_WORK[case["id"]]))
    return pytest.param(case["id"], id=case["id"], marks=marks)


@pytest.mark.parametrize("case_id", [_param(case) for case in CASES])
def test_pkits(case_id: str) -> None:
    case = BY_ID[case_id]
    outcome = outcome_of(case_id)
    if case_id in DELIBERATE:
        assert not outcome.valid and "disallowed signature mechanism" in outcome.detail, outcome
        return
    if case["expected"] == "invalid":
        assert not outcome.valid, f"PKITS {case_id} {case['name']} must be refused; it was accepted"
    else:
        assert outcome.valid, f"PKITS {case_id} {case['name']} must be accepted: {outcome.detail}"


# -- the table itself ------------------------------------------------------------------------
def test_known_gaps_are_valid_rows_openssl_fails_too() -> None:
    """A known gap may only excuse a valid-expected row that OpenSSL does not pass either."""
    for case_id in KNOWN_ENGINE_GAPS:
        case = BY_ID[case_id]
        assert case["expected"] == "valid", f"{case_id}: an invalid row is never excused"
        assert case["openssl_ok"] is False, f"{case_id}: OpenSSL passes it, so must we"


def test_table_covers_every_pkits_test_and_file() -> None:
    """Sections 4.1-4.16 complete (224 tests), every certificate and CRL file used and present."""
    assert DATA is not None
    counts = {"4.1": 6, "4.2": 8, "4.3": 11, "4.4": 21, "4.5": 8, "4.6": 17, "4.7": 5, "4.8": 20}
    counts |= {"4.9": 8, "4.10": 14, "4.11": 11, "4.12": 10, "4.13": 38, "4.14": 35, "4.15": 10}
    counts |= {"4.16": 2}
    tests: dict[str, set[str]] = {}
    for case in CASES:
        tests.setdefault(case["section"], set()).add(case["test"])
        assert case["test"].startswith(case["section"] + ".")
        assert case["expected"] in {"valid", "invalid"}
        assert isinstance(case["openssl_ok"], bool)
        assert case["crls"][0] == "TrustAnchorRootCRL.crl"
        assert ("inputs" in case) == (case["section"] in {"4.8", "4.9", "4.10", "4.11", "4.12"})
    assert {s: len(t) for s, t in tests.items()} == counts
    for section, test_ids in tests.items():
        assert test_ids == {f"{section}.{n}" for n in range(1, counts[section] + 1)}
    assert len({case["id"] for case in CASES}) == len(CASES)
    used_certs = {DOCUMENT["trust_anchor"]}
    used_crls: set[str] = set()
    for case in CASES:
        used_certs |= {case["end_entity"], *case["path"], *case["other_certs"]}
        used_crls |= set(case["crls"])
    assert used_certs == {p.name for p in (DATA / "certs").iterdir()}
    assert used_crls == {p.name for p in (DATA / "crls").iterdir()}


# -- summary ---------------------------------------------------------------------------------
def _passed(case: dict[str, Any], outcome: Outcome) -> bool:
    return outcome.valid == (case["expected"] == "valid")


def test_summary() -> None:
    """Passed / failed per section: printed (pytest -s) and written to test-artifacts/."""
    outcomes = {case["id"]: outcome_of(case["id"]) for case in CASES}
    sections: dict[str, dict[str, Any]] = {}
    for case in CASES:
        entry = sections.setdefault(
            case["section"],
            {
                "title": DOCUMENT["sections"][case["section"]],
                "rows": 0,
                "pass": 0,
                "fail": 0,
                "openssl_pass": 0,
                "failed": [],
            },
        )
        entry["rows"] += 1
        entry["openssl_pass"] += case["openssl_ok"]
        if _passed(case, outcomes[case["id"]]):
            entry["pass"] += 1
        else:
            entry["fail"] += 1
            entry["failed"].append(case["id"])
    overall = {
        key: sum(s[key] for s in sections.values())
        for key in ("rows", "pass", "fail", "openssl_pass")
    }
    accepted_invalid = sorted(
        case["id"] for case in CASES if case["expected"] == "invalid" and outcomes[case["id"]].valid
    )
    missed_openssl_passes = sorted(
        case["id"]
        for case in CASES
        if case["openssl_ok"] and not _passed(case, outcomes[case["id"]])
    )
    summary = {
        "suite": "NIST PKITS (cryptography_vectors x509/PKITS_data)",
        "profile": "rfc5280",
        "validation_time": VALIDATION_TIME.isoformat(),
        "overall": overall,
        "sections": sections,
        "accepted_invalid": accepted_invalid,
        "failed_where_openssl_passes": missed_openssl_passes,
        "known_engine_gaps": sorted(KNOWN_ENGINE_GAPS),
        "open_crl_work": sorted(OPEN_CRL_WORK),
        "deliberate": sorted(DELIBERATE),
        "failures": {
            case_id: outcomes[case_id].detail
            for case_id in sorted({i for s in sections.values() for i in s["failed"]})
        },
    }
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"\nPKITS: {overall['rows']} rows: {overall['pass']} pass, {overall['fail']} fail "
        f"(OpenSSL passes {overall['openssl_pass']}); "
        + "; ".join(f"{s} {v['pass']}/{v['rows']}" for s, v in sections.items())
        + f" (written to {SUMMARY})"
    )
    assert overall["rows"] == len(CASES)
