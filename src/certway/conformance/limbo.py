"""``certway-limbo``: run x509-limbo testcases through certway's validation engine.

Reads a testcase file (``{"version": 1, "testcases": [...]}``, see
``shared/conformance/README.md``), validates each testcase with
:func:`certway.trust.validate.validate` and writes a limbo result file::

    certway-limbo TESTCASES.json [--output RESULTS.json] [--profile rfc5280|webpki]
                  [--timeout 5] [--only ID_SUBSTRING] [--quiet]

Each testcase is validated the way the product validates a peer certificate: the options come
from :meth:`ValidationOptions.for_peer`, which the SIP and admin listeners, ``certway check``
and zones use too (so CLIENT testcases are judged as the product judges client certificates,
e.g. a client certificate without SAN is accepted). ``--profile`` picks the validation
profile (default: the product's default, ``rfc5280``). The testcase's own inputs are applied
on top: its maximum chain depth, its CRLs, and its expected client names and key usages.

Skip rules and EKU handling mirror ``cryptography``'s own limbo tests
(``tests/x509/verification/test_limbo.py`` in pyca/cryptography); under the ``rfc5280``
profile the testcases those rules skip only because the web PKI verifier lacks an RFC 5280
feature (DN name constraints, policy constraints, the self-issued path length exception, CA
certificates as leaves) are run. Testcases with CRLs are checked strictly: every non-anchor
certificate of the built path must be covered by a valid, current CRL from its issuer.
Testcases tagged ``denial-of-service`` run in a child process that is killed after
``--timeout`` seconds; all others run in-process.

Exit status: 0 whenever the testcase file could be read (mismatches are in the results and
the summary), 2 when it cannot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import multiprocessing as mp
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certway.pki.text import plural
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import RevocationPolicy, Scope
from certway.trust.validate import Profile, Purpose, ValidationOptions, validate

__all__ = [
    "RFC5280_RUNS",
    "SKIP_TESTCASES",
    "STRICT_CRL_POLICY",
    "UNSUPPORTED_FEATURES",
    "Outcome",
    "effective_profile",
    "evaluate",
    "evaluate_bounded",
    "main",
    "peer_name",
    "skip_reason",
]

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
SKIPPED = "SKIPPED"

DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = 60.0
"""How long a child process may take to import the engine before its clock starts."""

UNSUPPORTED_FEATURES: dict[str, str] = {
    # Same list, same reasons as cryptography's limbo tests; the verifier we build on does
    # not implement these (or deliberately follows CABF over a pedantic reading of RFC 5280).
    "pedantic-public-suffix-wildcard": "wildcards on public suffixes are not rejected",
    "name-constraint-dn": "distinguished-name name constraints are not supported",
    "pedantic-webpki-eku": "not every CABF EKU condition is enforced",
    "pedantic-webpki-subscriber-key": "CABF key requirements are not enforced on leaf keys",
    "pedantic-rfc5280": "strict RFC 5280 reading that validators widely ignore",
    "rfc5280-incompatible-with-webpki": "CABF rules are followed where they contradict RFC 5280",
    "has-policy-constraints": "policy constraints are not supported",
}

SKIP_TESTCASES: dict[str, str] = {
    # Same list, same reasons as cryptography's limbo tests.
    "pathlen::self-issued-certs-pathlen": "self-issued intermediates count for path length",
    "pathlen::max-chain-depth-1-self-issued": "self-issued intermediates count for depth",
    "rfc5280::serial::zero": "serial number zero is accepted (common in trust stores)",
    "rfc5280::ski::root-missing-ski": "CAs without SKI are accepted (as Go and webpki do)",
    "rfc5280::ski::intermediate-missing-ski": "CAs without SKI are accepted (as Go and webpki do)",
    "rfc5280::aki::intermediate-missing-aki": "intermediates without AKI are accepted",
    "webpki::aki::root-with-aki-ski-mismatch": "roots with AKI/SKI mismatch are accepted",
    "webpki::aki::root-with-aki-authoritycertissuer": "root AKI with extra fields is accepted",
    "webpki::aki::root-with-aki-authoritycertserialnumber": "root AKI with extra fields accepted",
    "webpki::aki::root-with-aki-all-fields": "root AKI with extra fields is accepted",
    "webpki::forbidden-rsa-not-divisable-by-8-in-root": "RSA sizes not divisible by 8 accepted",
    "rfc5280::ca-as-leaf": "CA certificates are refused as leaves (CABF)",
    "pathlen::validation-ignores-pathlen-in-leaf": "CA certificates are refused as leaves (CABF)",
}

RFC5280_RUNS: frozenset[str] = frozenset(
    {
        # features and testcases skipped above only because the web PKI verifier lacks an
        # RFC 5280 rule; the rfc5280 profile implements RFC 5280 path validation, so it runs them
        "name-constraint-dn",
        "has-policy-constraints",
        "rfc5280-incompatible-with-webpki",
        "pathlen::self-issued-certs-pathlen",
        "pathlen::max-chain-depth-1-self-issued",
        "pathlen::validation-ignores-pathlen-in-leaf",
        "rfc5280::ca-as-leaf",
    }
)

STRICT_CRL_POLICY = RevocationPolicy(
    enabled=True, ocsp=False, crl=True, cdp=False, scope=Scope.ALL, require_crl=True
)
"""Testcases with CRLs: every non-anchor certificate must be covered by a current CRL."""

_SERVER_EKUS: tuple[list[str], ...] = ([], ["serverAuth"])
_CLIENT_EKUS: tuple[list[str], ...] = ([], ["clientAuth"])


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    actual_result: str
    context: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "actual_result": self.actual_result, "context": self.context}


class _Unusable(Exception):
    """A testcase input that cannot be parsed: a conforming verifier rejects it."""


# -- rules -----------------------------------------------------------------------------------
def effective_profile(profile: Profile | None) -> Profile:
    """``profile``, or the product's default profile when None."""
    return profile if profile is not None else ValidationOptions().profile


def skip_reason(testcase: Mapping[str, Any], profile: Profile | None = None) -> str | None:
    """Why ``testcase`` is not run under ``profile`` (cryptography's limbo skip rules, less
    ``RFC5280_RUNS`` under the rfc5280 profile), or None to run it."""
    runs = RFC5280_RUNS if effective_profile(profile) is Profile.RFC5280 else frozenset()
    tc_id = str(testcase.get("id", ""))
    if tc_id in SKIP_TESTCASES and tc_id not in runs:
        return f"explicitly skipped testcase: {SKIP_TESTCASES[tc_id]}"
    features = testcase.get("features") or []
    unsupported = sorted(f for f in features if f in UNSUPPORTED_FEATURES and f not in runs)
    if unsupported:
        return "unsupported feature: " + "; ".join(
            f"{f} ({UNSUPPORTED_FEATURES[f]})" for f in unsupported
        )
    if testcase.get("signature_algorithms"):
        return "signature algorithm restrictions are not supported"
    kind = testcase.get("validation_kind")
    ekus = list(testcase.get("extended_key_usage") or [])
    if kind == "SERVER":
        if ekus not in _SERVER_EKUS:
            return f"server validation with extended key usage {ekus} is not supported"
        peer = testcase.get("expected_peer_name")
        if not isinstance(peer, Mapping):
            return "server validation without an expected peer name is not supported"
        if peer.get("kind") == "RFC822":
            return "email peer names are not supported"
        if peer.get("kind") not in {"DNS", "IP"}:
            return f"peer name kind {peer.get('kind')!r} is not supported"
        return None
    if kind == "CLIENT":
        if ekus not in _CLIENT_EKUS:
            return f"client validation with extended key usage {ekus} is not supported"
        for peer in testcase.get("expected_peer_names") or []:
            if not isinstance(peer, Mapping) or peer.get("kind") not in {"DNS", "IP", "RFC822"}:
                return f"expected peer name {peer!r} is not supported"
        return None
    return f"validation kind {kind!r} is not supported"


def peer_name(entry: Mapping[str, Any]) -> x509.GeneralName:
    """A limbo peer name (``{"kind": "DNS"|"IP"|"RFC822", "value": …}``) as a GeneralName."""
    kind, value = entry["kind"], str(entry["value"])
    if kind == "DNS":
        return x509.DNSName(value)
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "RFC822":
        return x509.RFC822Name(value)
    raise ValueError(f"unknown peer name kind {kind!r}")


def _validation_time(value: object) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _Unusable(f"validation_time {value!r} is not RFC 3339: {exc}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _certificate(pem: object, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(str(pem).encode())
    except ValueError as exc:
        raise _Unusable(f"{what} cannot be parsed: {exc}") from None


def _crl(pem: object, what: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(str(pem).encode())
    except ValueError as exc:
        raise _Unusable(f"{what} cannot be parsed: {exc}") from None


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _name_key(name: x509.GeneralName) -> tuple[str, str]:
    return (type(name).__name__, str(name.value))


_KEY_USAGE_ATTRS = {
    "digitalSignature": "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}


def _missing_key_usage(cert: x509.Certificate, wanted: Sequence[str]) -> list[str]:
    """Usages in ``wanted`` the leaf's KeyUsage (when present) does not assert."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    missing = []
    for name in wanted:
        attr = _KEY_USAGE_ATTRS.get(name)
        try:
            if attr is None or not getattr(usage, attr):
                missing.append(name)
        except ValueError:  # encipher/decipherOnly are undefined without keyAgreement
            missing.append(name)
    return missing


# -- evaluation ------------------------------------------------------------------------------
def evaluate(testcase: Mapping[str, Any], profile: Profile | None = None) -> Outcome:
    """Run one testcase in this process under ``profile`` (None: the product's default).
    Never raises for bad testcase content."""
    tc_id = str(testcase.get("id", "?"))
    reason = skip_reason(testcase, profile)
    if reason is not None:
        return Outcome(tc_id, SKIPPED, reason)
    try:
        with warnings.catch_warnings():
            # e.g. "serial number wasn't positive": the verdict is the engine's to give
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return _evaluate(tc_id, testcase, effective_profile(profile))
    except _Unusable as exc:
        return Outcome(tc_id, FAILURE, str(exc))
    except (KeyError, TypeError) as exc:
        return Outcome(tc_id, FAILURE, f"malformed testcase: {type(exc).__name__}: {exc}")
    except (ValueError, x509.DuplicateExtension) as exc:  # lazily parsed extensions
        return Outcome(
            tc_id, FAILURE, f"malformed certificate: validation raised {type(exc).__name__}: {exc}"
        )
    except Exception as exc:  # the engine must never take the whole run down
        return Outcome(tc_id, FAILURE, f"validation raised {type(exc).__name__}: {exc}")


def _evaluate(tc_id: str, testcase: Mapping[str, Any], profile: Profile) -> Outcome:
    trusted = [
        _certificate(pem, f"trusted certificate {n}")
        for n, pem in enumerate(testcase["trusted_certs"], start=1)
    ]
    intermediates = [
        _certificate(pem, f"untrusted intermediate {n}")
        for n, pem in enumerate(testcase["untrusted_intermediates"], start=1)
    ]
    leaf = _certificate(testcase["peer_certificate"], "peer certificate")
    crls = [_crl(pem, f"CRL {n}") for n, pem in enumerate(testcase.get("crls") or [], start=1)]
    at = _validation_time(testcase.get("validation_time"))
    depth = testcase.get("max_chain_depth")
    server = testcase["validation_kind"] == "SERVER"
    # Exactly what the product uses for a peer, then the testcase's own chain depth limit.
    options = ValidationOptions.for_peer(
        Purpose.SERVER if server else Purpose.CLIENT,
        name=str(testcase["expected_peer_name"]["value"]) if server else None,
    )
    options = replace(
        options, profile=profile, max_chain_depth=int(depth) if depth is not None else None
    )
    policy = STRICT_CRL_POLICY if crls else RevocationPolicy(enabled=False)
    result = validate(
        leaf,
        intermediates,
        trust=TrustSnapshot.of(trusted),
        at=at,
        options=options,
        policy=policy,
        crls=crls,
    )
    if not result.valid:
        return Outcome(tc_id, FAILURE, f"{result.code}: {result.reason}")

    if not server and testcase.get("expected_peer_names"):
        expected = sorted(_name_key(peer_name(p)) for p in testcase["expected_peer_names"])
        presented = sorted(_name_key(n) for n in _sans(leaf))
        if expected != presented:
            return Outcome(
                tc_id,
                FAILURE,
                "name-mismatch: the client certificate names "
                f"{[v for _, v in presented] or 'nothing'}, expected {[v for _, v in expected]}",
            )
    missing = _missing_key_usage(leaf, list(testcase.get("key_usage") or []))
    if missing:
        return Outcome(
            tc_id, FAILURE, f"wrong-key-usage: the certificate's KeyUsage lacks {missing}"
        )
    revocation = f", {len(result.chain) - 1} checked against CRLs" if crls else ""
    return Outcome(
        tc_id, SUCCESS, f"valid: chain of {plural(len(result.chain), 'certificate')}{revocation}"
    )


def _worker(testcase_json: str, profile: str | None, conn: Connection) -> None:
    """Child-process side of :func:`evaluate_bounded`."""
    conn.send(("started", None))
    outcome = evaluate(json.loads(testcase_json), Profile(profile) if profile else None)
    conn.send(("done", outcome.as_dict()))
    conn.close()


def evaluate_bounded(
    testcase: Mapping[str, Any], timeout: float, profile: Profile | None = None
) -> Outcome:
    """Run one testcase in a child process, killed after ``timeout`` seconds of work."""
    tc_id = str(testcase.get("id", "?"))
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker,
        args=(json.dumps(testcase), profile.value if profile else None, sender),
        daemon=True,
        name="limbo-worker",
    )
    proc.start()
    sender.close()  # only the child writes; closing our end lets us see EOF if it dies
    try:
        # The clock starts once the child has imported the engine and begun the testcase.
        if not receiver.poll(STARTUP_TIMEOUT):
            return Outcome(tc_id, FAILURE, "worker process did not start")
        receiver.recv()
        if not receiver.poll(timeout):
            return Outcome(tc_id, FAILURE, f"timed out after {timeout:g} s")
        _, data = receiver.recv()
        return Outcome(tc_id, str(data["actual_result"]), str(data["context"]))
    except EOFError:
        proc.join(1)
        return Outcome(
            tc_id, FAILURE, f"worker process died without a result (exit code {proc.exitcode})"
        )
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(2)
        if proc.is_alive():
            proc.kill()
        proc.join()
        receiver.close()


# -- command line ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certway-limbo",
        description="Run x509-limbo testcases through certway's validation engine.",
    )
    parser.add_argument("testcases", type=Path, help="x509-limbo testcase file (JSON)")
    parser.add_argument("--output", type=Path, help="write the result file here (default: stdout)")
    parser.add_argument(
        "--profile",
        choices=[p.value for p in Profile],
        help=f"validation profile (default: the product's default, {effective_profile(None)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds a denial-of-service testcase may run (default: 5)",
    )
    parser.add_argument("--only", metavar="ID_SUBSTRING", help="run only matching testcases")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    return parser


def _load(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("testcases"), list):
        raise ValueError("not an x509-limbo testcase file (no 'testcases' list)")
    for number, testcase in enumerate(data["testcases"], start=1):
        if not isinstance(testcase, dict) or not isinstance(testcase.get("id"), str):
            raise ValueError(f"testcase {number} is not an object with an 'id'")
    return list(data["testcases"])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.timeout > 0:
        print("certway-limbo: --timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        testcases = _load(args.testcases)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"certway-limbo: cannot read {args.testcases}: {exc}", file=sys.stderr)
        return 2
    if args.only:
        testcases = [t for t in testcases if args.only in t["id"]]
    profile = effective_profile(Profile(args.profile) if args.profile else None)

    started = time.monotonic()
    outcomes: list[Outcome] = []
    passed = failed = skipped = 0
    for testcase in testcases:
        if "denial-of-service" in (testcase.get("features") or []):
            outcome = evaluate_bounded(testcase, args.timeout, profile)
        else:
            outcome = evaluate(testcase, profile)
        outcomes.append(outcome)
        if outcome.actual_result == SKIPPED:
            skipped += 1
        elif outcome.actual_result == testcase.get("expected_result"):
            passed += 1
        else:
            failed += 1
            if not args.quiet:
                print(
                    f"MISMATCH {outcome.id}: expected {testcase.get('expected_result')}, "
                    f"got {outcome.actual_result} ({outcome.context})",
                    file=sys.stderr,
                )

    document = {
        "version": 1,
        "harness": "certway",
        "results": [o.as_dict() for o in outcomes],
    }
    text = json.dumps(document, indent=2) + "\n"
    if args.output is not None:
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"certway-limbo: cannot write {args.output}: {exc}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    print(
        f"certway-limbo ({profile}): {len(outcomes)} testcases: {passed} pass, {failed} fail, "
        f"{skipped} skipped ({time.monotonic() - started:.1f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
