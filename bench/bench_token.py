"""Local CAs with their key in a PKCS#11 token (SoftHSM2) vs the same key type in software.

    .venv/bin/python bench/bench_token.py            # full run (about a minute)
    .venv/bin/python bench/bench_token.py --quick    # a smoke run

What a user calls, end to end: ``LocalCA.sign`` (the path behind ``certway ca sign`` and
``POST /api/v1/local-ca/{name}/sign``: CSR parsing and checks, signing, database insert) and
an OCSP answer (``respond`` with the CA's lookup, as the publish listener does), for a P-256
and an RSA-2048 CA whose key is in a throwaway SoftHSM2 token, against a CA of the same key
type whose key is sealed in software, in the same run. Also each key's raw signature rate,
to show where the time goes. The token session is opened once and reused (the run prints how
many sessions were opened: 1 means no login per signature).

Needs Debian's softhsm2 (``make test`` installs it) and python-pkcs11.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import tempfile
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import generate_key
from certway.pki.ocsp_responder import respond
from certway.services.node import Node

from benchlib import ROWS, Row, add_row, per_op, print_table, rate

NOW = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
PIN = "bench-pin-7731"
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
LEGEND = (
    "ratio: token rate / software rate of the same key type and operation (1.00 = as fast; "
    "below 1 the token is slower). Rates are the best of several rounds."
)


def _softhsm(base: Path) -> str:
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if Path(m).is_file()), None)
    if util is None or module is None:
        raise SystemExit("SoftHSM2 is missing: install the Debian package softhsm2")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", "bench", "--pin", PIN, "--so-pin", "so-1"],
        check=True,
        capture_output=True,
    )
    return module


def _raw_signer(key: object) -> partial[bytes]:
    data = b"\x42" * 512  # about the size of a certificate's TBS
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return partial(key.sign, data, ec.ECDSA(hashes.SHA256()))
    return partial(key.sign, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]


def _ocsp_request(node: Node, ca: str) -> bytes:
    csr, _ = build_csr(generate_key("ec:p256"), CsrForm(common_name=f"ocsp.{ca}.example.com"))
    leaf = node.local_ca.sign_checked(ca, csr).certificate
    issuer = node.local_ca.certificate(ca)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()  # noqa: S303 (RFC 5019 CertID)
    return request.public_bytes(serialization.Encoding.DER)


def _best(fn: partial[object], n: int, rounds: int) -> float:
    return min(per_op(fn, n) for _ in range(rounds))


def run(quick: bool) -> None:
    n, rounds = (20, 3) if quick else (100, 5)
    with tempfile.TemporaryDirectory() as tmp:
        module = _softhsm(Path(tmp))
        node = Node.init(Path(tmp) / "data", FixedClock(NOW), factory=False)
        try:
            node.tokens.add("hsm", module=module, token_label="bench", pin=PIN)  # noqa: S106
            token_id = node.tokens.token_id("hsm")
            csr, _ = build_csr(generate_key("ec:p256"), CsrForm(common_name="leaf.example.com"))
            csr_pem = csr.public_bytes(serialization.Encoding.PEM)
            for key_type, label in (("ec:p256", "P-256"), ("rsa:2048", "RSA-2048")):
                tag = key_type.replace(":", "-")
                node.local_ca.create_root(
                    f"hsm-{tag}",
                    f"/CN=Token {label}",
                    key_type=key_type,
                    token="hsm",  # noqa: S106
                )
                node.local_ca.create_root(f"soft-{tag}", f"/CN=Soft {label}", key_type=key_type)
                results = {}
                for where in ("hsm", "soft"):
                    ca = f"{where}-{tag}"
                    key = node.local_ca._issuer(ca)[1].key
                    request = _ocsp_request(node, ca)
                    results[where] = (
                        _best(_raw_signer(key), n, rounds),
                        _best(partial(node.local_ca.sign, ca, csr_pem), n, rounds),
                        _best(
                            partial(respond, request, lookup=node.local_ca.ocsp_lookup, at=NOW),
                            n,
                            rounds,
                        ),
                    )
                for index, what in enumerate(
                    ("raw signature", "LocalCA.sign (issue)", "OCSP answer")
                ):
                    token, soft = results["hsm"][index], results["soft"][index]
                    add_row(
                        Row(
                            label,
                            what,
                            f"token {rate(1 / token)}",
                            f"software {rate(1 / soft)}",
                            soft / token,
                        )
                    )
            opened = node.tokens.session(token_id).generation + 1
            print(f"token sessions opened during the run: {opened} (one login, reused)")
        finally:
            node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    print(f"certway bench_token{' --quick' if args.quick else ''}: SoftHSM2 token vs software keys")
    run(args.quick)
    print_table(LEGEND, measured="token")
    assert ROWS


if __name__ == "__main__":
    main()
