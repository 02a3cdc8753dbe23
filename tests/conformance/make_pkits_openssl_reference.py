"""Re-derive the reference columns of ``pkits_cases.json`` (run on demand, not in the suite).

For every row of the PKITS case table this runs two independent verifiers on the same files
and inputs, and compares each verdict with the row's ``expected`` result (the one the PKITS
description publishes):

* ``openssl verify`` (OpenSSL 3): ``-CAfile TrustAnchorRootCertificate -untrusted <path and
  other certificates> -CRLfile <crls> -crl_check_all -extended_crl -use_deltas -x509_strict
  -policy_check``, plus ``-explicit_policy``, ``-inhibit_any``, ``-inhibit_map`` and one
  ``-policy OID`` per element of the initial-policy-set (anyPolicy included). Its agreement is written
  to the table as ``"openssl_ok"``: the PKITS test in ``test_pkits.py`` may mark a
  valid-expected row as a known failure of the engine only where OpenSSL fails it too.
* pyhanko-certvalidator (``revocation_mode="require"``, every algorithm accepted since PKITS
  signs with 1024-bit DSA and SHA-1 in its DSA tests): printed only, as a second opinion on
  the table.

    python tests/conformance/make_pkits_openssl_reference.py            # report only
    python tests/conformance/make_pkits_openssl_reference.py --write    # update openssl_ok

Exit status 0, or 1 when ``--check`` is given and the table's ``openssl_ok`` column is not
what OpenSSL says today.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TABLE = HERE / "pkits_cases.json"
VALIDATION_TIME = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
ANY_POLICY = "2.5.29.32.0"


def pkits_dir() -> Path:
    """``x509/PKITS_data`` of the installed ``cryptography_vectors`` package."""
    import cryptography_vectors

    return Path(cryptography_vectors.__file__).resolve().parent / "x509" / "PKITS_data"


def load_table(path: Path = TABLE) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def dump_table(table: dict[str, Any]) -> str:
    """The table as JSON with one case per line (short, reviewable diffs)."""
    head = {k: v for k, v in table.items() if k != "cases"}
    lines = [json.dumps(head, indent=1)[:-2] + ",", ' "cases": [']
    rows = [" " + json.dumps(case) for case in table["cases"]]
    lines.append(",\n".join(rows))
    lines.append(" ]\n}\n")
    return "\n".join(lines)


def _pem(der: bytes, label: str) -> str:
    body = base64.b64encode(der).decode("ascii")
    wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{wrapped}\n-----END {label}-----\n"


# -- OpenSSL ---------------------------------------------------------------------------------
def openssl_command(case: dict[str, Any], files: dict[str, Path]) -> list[str]:
    command = [
        "openssl",
        "verify",
        "-CAfile",
        str(files["anchor"]),
        "-crl_check_all",
        "-extended_crl",
        "-use_deltas",
        "-x509_strict",
        "-policy_check",
        "-attime",
        str(int(VALIDATION_TIME.timestamp())),
    ]
    if "untrusted" in files:
        command += ["-untrusted", str(files["untrusted"])]
    if "crls" in files:
        command += ["-CRLfile", str(files["crls"])]
    inputs = case.get("inputs") or {}
    if inputs.get("initial_explicit_policy"):
        command.append("-explicit_policy")
    if inputs.get("initial_any_policy_inhibit"):
        command.append("-inhibit_any")
    if inputs.get("initial_policy_mapping_inhibit"):
        command.append("-inhibit_map")
    # Always name the initial-policy-set, anyPolicy included: without any -policy, OpenSSL
    # takes it as empty and refuses every path on which an explicit policy is required.
    for oid in inputs.get("initial_policy_set") or [ANY_POLICY]:
        command += ["-policy", oid]
    command.append(str(files["leaf"]))
    return command


def run_openssl(case: dict[str, Any], data: Path, anchor: str, work: Path) -> tuple[bool, str]:
    """(valid, last line of output) from ``openssl verify`` for one case."""

    def write(name: str, parts: Sequence[tuple[str, str]]) -> Path:
        target = work / name
        target.write_text(
            "".join(_pem((data / sub / f).read_bytes(), label) for sub, f, label in parts),
            encoding="ascii",
        )
        return target

    files = {
        "anchor": write("anchor.pem", [("certs", anchor, "CERTIFICATE")]),
        "leaf": write("leaf.pem", [("certs", case["end_entity"], "CERTIFICATE")]),
    }
    others = [*case["path"], *case["other_certs"]]
    if others:
        files["untrusted"] = write("untrusted.pem", [("certs", f, "CERTIFICATE") for f in others])
    if case["crls"]:
        files["crls"] = write("crls.pem", [("crls", f, "X509 CRL") for f in case["crls"]])
    done = subprocess.run(openssl_command(case, files), capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip().splitlines()
    error = next((line for line in output if line.startswith("error ")), None)
    return done.returncode == 0, error or (output[-1] if output else "")


# -- pyhanko-certvalidator -------------------------------------------------------------------
def run_pyhanko(case: dict[str, Any], data: Path, anchor: str) -> tuple[bool, str]:
    """(valid, error) from pyhanko-certvalidator with the PKITS inputs of one case."""
    from asn1crypto import crl as asn1_crl
    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
    from pyhanko_certvalidator.policy_decl import AcceptAllAlgorithms, PKIXValidationParams

    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)  # no tracebacks

    def cert(name: str) -> Any:
        return asn1_x509.Certificate.load((data / "certs" / name).read_bytes())

    context = ValidationContext(
        trust_roots=[cert(anchor)],
        other_certs=[cert(f) for f in [*case["path"], *case["other_certs"]]],
        crls=[
            asn1_crl.CertificateList.load((data / "crls" / f).read_bytes()) for f in case["crls"]
        ],
        moment=VALIDATION_TIME,
        revocation_mode="require",
        algorithm_usage_policy=AcceptAllAlgorithms(),
    )
    inputs = case.get("inputs") or {}
    policies = inputs.get("initial_policy_set") or [ANY_POLICY]
    params = PKIXValidationParams(
        user_initial_policy_set=frozenset(
            "any_policy" if oid == ANY_POLICY else oid for oid in policies
        ),
        initial_explicit_policy=bool(inputs.get("initial_explicit_policy")),
        initial_policy_mapping_inhibit=bool(inputs.get("initial_policy_mapping_inhibit")),
        initial_any_policy_inhibit=bool(inputs.get("initial_any_policy_inhibit")),
    )
    validator = CertificateValidator(
        cert(case["end_entity"]), validation_context=context, pkix_params=params
    )
    try:
        asyncio.run(validator.async_validate_path())
    except (PathBuildingError, PathValidationError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


# -- main ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update openssl_ok in the table")
    parser.add_argument("--check", action="store_true", help="exit 1 if openssl_ok is stale")
    parser.add_argument("--no-pyhanko", action="store_true", help="skip the pyhanko opinion")
    args = parser.parse_args(argv)
    if shutil.which("openssl") is None:
        print("openssl is not installed", file=sys.stderr)
        return 2
    data = pkits_dir()
    table = load_table()
    anchor = str(table["trust_anchor"])
    stale: list[str] = []
    openssl_wrong: list[str] = []
    pyhanko_wrong: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pkits-") as tmp:
        for case in table["cases"]:
            expected_valid = case["expected"] == "valid"
            valid, detail = run_openssl(case, data, anchor, Path(tmp))
            ok = valid == expected_valid
            if not ok:
                openssl_wrong.append(
                    f"{case['id']} {case['name']}: expected {case['expected']}, "
                    f"OpenSSL says {'valid' if valid else detail}"
                )
            if case.get("openssl_ok") != ok:
                stale.append(case["id"])
            case["openssl_ok"] = ok
            if not args.no_pyhanko:
                ph_valid, ph_detail = run_pyhanko(case, data, anchor)
                if ph_valid != expected_valid:
                    pyhanko_wrong.append(
                        f"{case['id']} {case['name']}: expected {case['expected']}, "
                        f"pyhanko-certvalidator says {'valid' if ph_valid else ph_detail}"
                    )
    total = len(table["cases"])
    print(f"OpenSSL agrees with PKITS on {total - len(openssl_wrong)} of {total} rows")
    for line in openssl_wrong:
        print("  " + line)
    if not args.no_pyhanko:
        print(f"pyhanko-certvalidator agrees on {total - len(pyhanko_wrong)} of {total} rows")
        for line in pyhanko_wrong:
            print("  " + line)
    if args.write:
        TABLE.write_text(dump_table(table), encoding="utf-8")
        print(f"written: {TABLE} ({len(stale)} openssl_ok values changed)")
    elif stale:
        print(f"openssl_ok differs from today's OpenSSL in {len(stale)} rows: {', '.join(stale)}")
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
