"""Trust engine performance against baselines measured in the same run.

    .venv/bin/python bench/bench_trust.py            # full run (about a minute, ~0.7 GB RSS)
    .venv/bin/python bench/bench_trust.py --quick    # 100k-entry CRL, fewer rounds (smoke run)

1. Validations per second of a 3-certificate P-256 chain (trusted root, untrusted
   intermediate, leaf) through ``trust.validate`` with CRL checking of the whole chain (the
   intermediate against the root's CRL, the leaf against the intermediate's CRL), with a
   10-entry and a 1,000,000-entry CRL for the leaf's issuer, against ``cryptography``'s bare
   server verifier on the same chain. Interleaved rounds, best round per side.
2. Time and memory to load, verify and index the 1M-entry CRL from DER bytes
   (``x509.load_der_x509_crl`` + ``index_crl``), each run in a fresh interpreter so RSS numbers
   belong to that CRL alone, against ``openssl verify -crl_check`` on the same CRL (PEM), whose
   wall time and peak RSS (VmHWM polled from /proc) are measured too.

Ratios are against baselines measured in this run, so a busy machine moves both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cryptography
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certway.pki.crl import CrlParams, build_crl, revoked_entry
from certway.pki.issue import Issuer, create_root
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import Profile, RevocationPolicy, Scope
from certway.trust.revocation import RevocationIndex, index_crl
from certway.trust.validate import ValidationOptions, ValidationResult, validate

from benchlib import ROWS, Row, add_row, mb, peak_rss_mb, per_op, print_table, rate, seconds

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
AT = NOW + dt.timedelta(hours=2)  # about now, so the openssl CLI (which uses the clock) agrees
PEER = "peer.example.com"
REASON = x509.ReasonFlags.key_compromise
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- results -------------------------------------------------------------------------------
LEGEND = (
    "ratio: [1] certway rate / bare verifier rate, except the 1M row: cost (1/rate) with "
    "the\n       1M CRL / cost with the 10-entry CRL; [2] time: certway time / openssl "
    "time, memory:\n       certway RSS increase / openssl peak RSS (< 1 means certway "
    "is faster / smaller)."
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


# -- fixtures ------------------------------------------------------------------------------
def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Chain:
    root: x509.Certificate
    root_issuer: Issuer
    intermediate: x509.Certificate
    int_issuer: Issuer
    leaf: x509.Certificate
    revoked_leaf: x509.Certificate


def make_chain() -> Chain:
    """root → intermediate → leaf, P-256 throughout, as ``tests/pkitools.Pki`` builds it."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = create_root(
        root_key,
        name("Bench Root CA"),
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW + dt.timedelta(days=3650),
    )
    root_issuer = Issuer(root, root_key)
    int_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = root_issuer.issue(
        int_key.public_key(),
        name("Bench Issuing CA"),
        profile="sub-ca",
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW + dt.timedelta(days=1000),
    )
    int_issuer = Issuer(intermediate, int_key)
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def leaf(serial: int | None = None) -> x509.Certificate:
        return int_issuer.issue(
            leaf_key.public_key(),
            name(PEER),
            profile="server-client",
            alt_names=[x509.DNSName(PEER)],
            not_before=NOW - dt.timedelta(days=1),
            not_after=NOW + dt.timedelta(days=90),
            serial=serial,
        )

    return Chain(root, root_issuer, intermediate, int_issuer, leaf(), leaf(REVOKED_SERIAL))


REVOKED_SERIAL = (1 << 158) | 0xBE9C4  # in every leaf-issuer CRL of this bench


def serials(n: int, seed: int) -> Iterator[int]:
    """``n`` distinct random 159-bit serials (like ``random_serial``), then ``REVOKED_SERIAL``."""
    rng = random.Random(seed)
    seen: set[int] = set()
    while len(seen) < n - 1:
        serial = rng.getrandbits(159) | (1 << 158)
        if serial not in seen and serial != REVOKED_SERIAL:
            seen.add(serial)
            yield serial
    yield REVOKED_SERIAL


def make_crl(issuer: Issuer, n: int, number: int) -> x509.CertificateRevocationList:
    revoked_at = NOW - dt.timedelta(days=2)
    entries = [revoked_entry(s, revoked_at, REASON) for s in serials(n, seed=n)]
    params = CrlParams(number, NOW, NOW + dt.timedelta(days=7))
    return build_crl(issuer, entries, params)


# -- 1. validation rate --------------------------------------------------------------------
def check_results(ok: ValidationResult, bad: ValidationResult, number: int) -> None:
    """Outside the timings: the leaf is good per the intended CRLs, the revoked leaf is not."""
    assert ok.valid, ok.reason
    assert [r.status for r in ok.certificates] == ["good", "good", "trust-anchor"], ok.as_dict()
    leaf_text = ok.certificates[0].checks[-1].text
    assert f"CRL #{number} from " in leaf_text, leaf_text
    assert not bad.valid and bad.code == "revoked", bad.reason


def bench_validation(chain: Chain, big: x509.CertificateRevocationList, quick: bool) -> None:
    n_big = len(big)
    print(
        f"\n[1] validations/s, 3-certificate P-256 chain, CRL policy scope=all, leaf issuer's "
        f"CRL 10 vs {n_big:,} entries",
        flush=True,
    )
    trust = TrustSnapshot.of([chain.root])
    options = ValidationOptions(name=PEER)
    policy = RevocationPolicy(ocsp=False, cdp=False, scope=Scope.ALL)
    root_crl = index_crl(make_crl(chain.root_issuer, 10, 1), chain.root, source="root.crl")
    small = index_crl(make_crl(chain.int_issuer, 10, 2), chain.intermediate, source="int.crl")
    large = index_crl(big, chain.intermediate, source="int.crl")
    assert large.number == 3 and large.entries == n_big
    indexes = {
        "10": RevocationIndex.of([root_crl, small]),
        "big": RevocationIndex.of([root_crl, large]),
    }
    leaf, intermediates = chain.leaf, [chain.intermediate]

    def certway(which: str, cert: x509.Certificate = leaf) -> ValidationResult:
        return validate(
            cert,
            intermediates,
            trust=trust,
            at=AT,
            options=options,
            policy=policy,
            revocation=indexes[which],
        )

    for which, number in (("10", 2), ("big", 3)):
        check_results(certway(which), certway(which, chain.revoked_leaf), number)
    assert validate(leaf, intermediates, trust=trust, at=AT, options=options).valid

    store = Store([chain.root])  # built once, as TrustSnapshot holds its Store
    peer = x509.DNSName(PEER)

    def bare() -> object:
        return (
            PolicyBuilder()
            .store(store)
            .time(AT)
            .build_server_verifier(peer)
            .verify(leaf, intermediates)
        )

    def no_revocation() -> object:
        return validate(leaf, intermediates, trust=trust, at=AT, options=options)

    def cold() -> object:
        trust.paths.clear()  # RFC 5280 path validation from scratch, as on a new peer
        return validate(leaf, intermediates, trust=trust, at=AT, options=options)

    webpki_options = ValidationOptions(name=PEER, profile=Profile.WEBPKI)

    def webpki() -> object:
        return validate(leaf, intermediates, trust=trust, at=AT, options=webpki_options)

    assert len(bare()) == 3  # type: ignore[arg-type]
    # Short blocks (~40 ms), many interleaved rounds, best block per side.
    n = 300
    rounds = 8 if quick else 30
    sides: dict[str, Callable[[], float]] = {
        "bare": lambda: per_op(bare, n),
        "norev": lambda: per_op(no_revocation, n),
        "cold": lambda: per_op(cold, max(n // 10, 10)),
        "webpki": lambda: per_op(webpki, n),
        "10": lambda: per_op(lambda: certway("10"), n),
        "big": lambda: per_op(lambda: certway("big"), n),
    }
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(rounds):
        for side, run in sides.items():
            best[side] = min(best[side], run())
    bare_rate = 1 / best["bare"]
    baseline = f"bare verifier {rate(bare_rate)}"
    add_row(
        Row(
            "1 validate",
            "validate(), rfc5280 profile, cold (path not cached: a new peer chain)",
            rate(1 / best["cold"]),
            baseline,
            best["bare"] / best["cold"],
        )
    )
    add_row(
        Row(
            "1 validate",
            "validate(), webpki profile (cryptography's verifier + report)",
            rate(1 / best["webpki"]),
            baseline,
            best["bare"] / best["webpki"],
        )
    )
    add_row(
        Row(
            "1 validate",
            "validate(), rfc5280 profile, warm (cached path), no revocation policy",
            rate(1 / best["norev"]),
            baseline,
            best["bare"] / best["norev"],
        )
    )
    for side, label in (("10", "10"), ("big", f"{n_big:,}")):
        ratio = best["bare"] / best[side]
        add_row(
            Row(
                "1 validate",
                f"validate() + CRL check of the chain, leaf CRL {label} entries",
                rate(1 / best[side]),
                baseline,
                ratio,
                ">= 0.80 (cost <= 1.25x)",
                ratio >= 0.80,
            )
        )
    cost = best["big"] / best["10"]
    add_row(
        Row(
            "1 validate",
            f"cost with the {n_big:,}-entry CRL / cost with the 10-entry CRL",
            f"{best['big'] * 1e6:.1f} us",
            f"{best['10'] * 1e6:.1f} us",
            cost,
            "<= 1.20",
            cost <= 1.20,
        )
    )
    print(
        "  per validation: bare {:.1f} us, no-revocation {:.1f} us, CRL(10) {:.1f} us".format(
            *(best[s] * 1e6 for s in ("bare", "norev", "10"))
        ),
        flush=True,
    )


# -- 2. loading a 1M-entry CRL -------------------------------------------------------------
def load_child(der_path: str, issuer_path: str) -> None:
    """Runs in a fresh interpreter: time and RSS of loading + verifying + indexing one CRL."""
    issuer = x509.load_pem_x509_certificate(Path(issuer_path).read_bytes())
    gc.collect()
    base = rss_bytes()
    der = Path(der_path).read_bytes()
    start = time.perf_counter()
    crl = x509.load_der_x509_crl(der)
    t_load = time.perf_counter()
    indexed = index_crl(crl, issuer, source="bench", der=der)
    t_index = time.perf_counter()
    der_size = len(der)
    del der, crl
    gc.collect()
    retained = rss_bytes() - base
    peak = vm_hwm() - base
    # Attribution (after the timings): Python objects of the index vs the DER the CRL keeps.
    set_table = sys.getsizeof(indexed.serial_hashes)
    ints = sum(sys.getsizeof(s) for s in indexed.serial_hashes)
    print(
        json.dumps(
            {
                "entries": indexed.entries,
                "load": t_load - start,
                "index": t_index - t_load,
                "total": t_index - start,
                "retained": retained,
                "peak": peak,
                "der": der_size,
                "set_table": set_table,
                "ints": ints,
            }
        )
    )


def run_child(der_path: Path, issuer_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load-child", str(der_path), str(issuer_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def vm_hwm(pid: int | str = "self") -> int:
    """Peak RSS (bytes) of a live process's current address space, from /proc (VmHWM).

    Not ``ru_maxrss``: on Linux that survives ``execve``, and ``subprocess`` spawns with
    ``vfork``, so a child's ``ru_maxrss`` starts at this (large) process's peak RSS.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_openssl_verify(directory: Path) -> tuple[float, int]:
    """Wall time and peak RSS (bytes, VmHWM polled every 2 ms) of ``openssl verify``."""
    argv = [
        "openssl",
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "int.pem",
        "-CRLfile",
        "crl.pem",
        "leaf.pem",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError, ValueError):  # it may be exiting
            peak = max(peak, vm_hwm(proc.pid))
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    output = proc.stdout.read().decode() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0 and "leaf.pem: OK" in output, output
    return elapsed, peak


def bench_load(chain: Chain, der: bytes, quick: bool, tmp: Path) -> None:
    print(
        "\n[2] load + verify + index the leaf issuer's CRL from DER vs openssl verify -crl_check",
        flush=True,
    )
    pem = serialization.Encoding.PEM
    (tmp / "root.pem").write_bytes(chain.root.public_bytes(pem))
    (tmp / "int.pem").write_bytes(chain.intermediate.public_bytes(pem))
    (tmp / "leaf.pem").write_bytes(chain.leaf.public_bytes(pem))
    (tmp / "crl.der").write_bytes(der)
    (tmp / "crl.pem").write_bytes(x509.load_der_x509_crl(der).public_bytes(pem))
    if shutil.which("openssl") is None:
        print("  openssl not found: baseline skipped")
    repeats = 2 if quick else 3
    asis: dict[str, Any] = {}
    os_time, os_peak = float("inf"), 0
    for _ in range(repeats):  # interleaved; best time per side (memory barely varies)
        result = run_child(tmp / "crl.der", tmp / "int.pem")
        if not asis or result["total"] < asis["total"]:
            asis = result
        if shutil.which("openssl") is not None:
            elapsed, peak = run_openssl_verify(tmp)
            if elapsed < os_time:
                os_time, os_peak = elapsed, peak
    has_os = os_time < float("inf")
    entries = asis["entries"]
    full = entries >= 1_000_000
    print(
        f"  CRL: {entries:,} entries, {mb(asis['der'])} DER; retained = RSS after indexing "
        "minus RSS before reading the file (the IndexedCrl keeps the CRL object, which keeps "
        "the DER); peak = VmHWM minus that same base",
        flush=True,
    )
    print(
        f"  attribution of the retained {mb(asis['retained'])}: DER {mb(asis['der'])} + "
        f"frozenset table {mb(asis['set_table'])} + {entries:,} int objects {mb(asis['ints'])} "
        f"= {mb(asis['der'] + asis['set_table'] + asis['ints'])}",
        flush=True,
    )
    os_text = f"openssl {seconds(os_time)}" if has_os else "-"
    add_row(
        Row(
            "2 load CRL",
            f"load {asis['load']:.2f} + verify/index {asis['index']:.2f} (index_crl, der=)",
            seconds(asis["total"]),
            os_text,
            asis["total"] / os_time if has_os else None,
            "<= 2.5 s" if full else "",
            asis["total"] <= 2.5 if full else None,
        )
    )
    os_mem = f"openssl peak RSS {mb(os_peak)}" if has_os else "-"
    add_row(
        Row(
            "2 load CRL",
            f"memory, peak increase (retained {mb(asis['retained'])})",
            mb(asis["peak"]),
            os_mem,
            asis["peak"] / os_peak if has_os else None,
            "<= 150 MB" if full else "",
            asis["peak"] <= 150 * 2**20 if full else None,
        )
    )


# -- main ----------------------------------------------------------------------------------
def openssl_version() -> str:
    if shutil.which("openssl") is None:
        return "not installed"
    return subprocess.run(
        ["openssl", "version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k-entry CRL, fewer rounds")
    parser.add_argument("--load-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(*args.load_child)
        return
    print(
        f"certway bench_trust{' --quick' if args.quick else ''}: "
        f"python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}, {openssl_version()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    started = time.perf_counter()
    chain = make_chain()
    size = 100_000 if args.quick else 1_000_000
    setup = time.perf_counter()
    big = make_crl(chain.int_issuer, size, 3)
    der = big.public_bytes(serialization.Encoding.DER)
    big = x509.load_der_x509_crl(der)  # as a server holds it: parsed from bytes
    print(
        f"(setup: {size:,}-entry CRL built with build_crl in {time.perf_counter() - setup:.1f} s)",
        flush=True,
    )
    bench_validation(chain, big, args.quick)
    del big
    with tempfile.TemporaryDirectory(prefix="certway-bench-") as tmp:
        bench_load(chain, der, args.quick, Path(tmp))
    print_table(LEGEND)
    print(
        f"\npeak RSS {peak_rss_mb():,.0f} MB (this process); "
        f"total {time.perf_counter() - started:.0f} s; "
        f"load average {os.getloadavg()[0]:.2f} at end (other work on the machine skews ratios)"
    )
    missed = [r for r in ROWS if r.met is False]
    if missed:
        print(f"{len(missed)} target(s) missed")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
