"""Revocation sources against real servers on 127.0.0.1: URL sources (RV2) serving PEM, DER,
ZIP and GZIP, broken/expired/wrongly-signed CRLs, time-outs, size limits and bombs, the
daily schedule, HTTPS verified against the trusted CA list; CDP downloads with caching (RV3);
OCSP (RV4) against an openssl-backed responder; each fallback setting (RV5)."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certway.clock import FixedClock
from certway.errors import PolicyViolation
from certway.pki.issue import Issuer
from certway.services.node import Node

from conftest import NOW, test_key
from pkitools import Pki
from revocation_servers import (
    DAY,
    MB,
    Handler,
    LocalHttpServer,
    OpensslOcspResponder,
    der,
    fast_fetcher,
    gzip_bomb,
    pem,
    refused_url,
    send,
    tls_server_context,
    zip_bomb,
    zip_of,
)

HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Src", at=NOW, index=230)


@pytest.fixture(scope="module")
def pki2() -> Pki:
    return Pki("Zip", at=NOW, index=240)


@pytest.fixture(scope="module")
def pki3() -> Pki:
    return Pki("Gz", at=NOW, index=250)


@pytest.fixture
def server() -> Iterator[LocalHttpServer]:
    with LocalHttpServer() as http:
        yield http


def make_node(path: Path, clock: FixedClock, **fetcher: float) -> Node:
    return Node.init(path, clock, fetcher_factory=fast_fetcher(**fetcher), factory=False)  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, pki: Pki) -> Iterator[Node]:
    n = make_node(tmp_path / "data", clock)
    n.trusted_cas.add(pem(pki.root, pki.intermediate))
    try:
        yield n
    finally:
        n.close()


def status(node: Node) -> dict[str, dict[str, object]]:
    return {s.url: s.as_dict() for s in node.revocation.sources()}


# --------------------------------------------------------------------------- RV2 formats


def test_sources_serving_pem_der_zip_and_gzip(
    node: Node,
    server: LocalHttpServer,
    pki: Pki,
    pki2: Pki,
    pki3: Pki,
    clock: FixedClock,
) -> None:
    node.trusted_cas.add(pem(pki2.root, pki2.intermediate, pki3.root, pki3.intermediate))
    revoked = pki.leaf("revoked.example.com")
    issuing = pki.crl([(revoked, "keyCompromise")], number=10)
    server.routes.update(
        {
            "/issuing.pem": pem(issuing),
            "/root.der": der(pki.crl(issuer=pki.root_issuer, number=3)),
            "/two.zip": zip_of(
                {
                    "crls/issuing.pem": pem(pki2.crl(number=5)),
                    "crls/root.crl": der(pki2.crl(issuer=pki2.root_issuer, number=6)),
                }
            ),
            "/other.gz": gzip.compress(der(pki3.crl(number=8))),
        }
    )
    urls = [f"{server.url}{p}" for p in ("/issuing.pem", "/root.der", "/two.zip", "/other.gz")]
    listed = node.revocation.set_sources(urls)
    assert [s.url for s in listed] == urls
    assert all(s.last_attempt is None and s.error is None for s in listed)

    seen: list[str] = []
    node.revocation.update_now(progress=seen.append)
    assert seen == urls
    by_url = status(node)
    expected = {urls[0]: 10, urls[1]: 3, urls[2]: 5, urls[3]: 8}
    for url, number in expected.items():
        assert by_url[url]["error"] is None, by_url[url]
        assert by_url[url]["crl_number"] == number
        assert by_url[url]["last_attempt"] == by_url[url]["last_success"] == clock.now().isoformat()
        assert by_url[url]["next_update"] == (NOW - HOUR + 7 * DAY).isoformat()
    held = sorted((h.source, h.issuer, h.number) for h in node.revocation.held())
    assert held == sorted(
        [
            (urls[0], "CN=Src Issuing", 10),
            (urls[1], "CN=Src Root", 3),
            (urls[2], "CN=Zip Issuing", 5),
            (urls[2], "CN=Zip Root", 6),
            (urls[3], "CN=Gz Issuing", 8),
        ]
    )
    assert {h.kind for h in node.revocation.held()} == {"url"}

    result = node.client_check.check(pem(revoked)).result
    assert result.code == "revoked"
    assert result.reason.endswith(f"(keyCompromise) by CRL #10 from {urls[0]}")
    assert node.client_check.check(pem(pki.leaf("fine.example.com"))).result.valid


def test_bad_sources_each_record_their_error_and_store_nothing(
    node: Node, server: LocalHttpServer, pki: Pki, pki2: Pki, clock: FixedClock
) -> None:
    good = pki.crl(issuer=pki.root_issuer, number=1)
    server.routes.update(
        {
            "/good.crl": der(good),
            "/broken.crl": b"-----BEGIN X509 CRL-----\nAAAAAAAA\n-----END X509 CRL-----\n",
            "/html": b"<html>maintenance</html>",
            "/expired.crl": pem(pki.crl(number=2, this_update=NOW - 9 * DAY, days=7)),
            "/forged.crl": pem(pki.forged_crl(test_key("ec:p256", 235), number=3)),
            "/stranger.crl": pem(pki2.crl(number=4)),
            "/slow.crl": server.slow(5.0, der(good)),
            "/down": lambda h: send(h, b"down", 503),
        }
    )
    names = [
        "good.crl", "broken.crl", "html", "expired.crl", "forged.crl", "stranger.crl",
        "slow.crl", "down", "missing.crl",
    ]  # fmt: skip
    urls = {n: f"{server.url}/{n}" for n in names}
    urls["refused"] = refused_url("/crl")
    node.revocation.set_sources(list(urls.values()))
    node.revocation.update_now()  # the slow source's time-out is bounded: see its error below

    by_url = status(node)
    assert by_url[urls["good.crl"]]["error"] is None
    expected = {
        "broken.crl": r"CRL",
        "html": r"^the data is not a CRL \(PEM, DER, ZIP or GZIP\)$",
        "expired.crl": r"expired on 2026-11-25 12:00 UTC: an expired CRL is not used",
        "forged.crl": r"has a bad signature: it was not signed by CN=Src Issuing",
        "stranger.crl": r"the CRL issuer CN=Zip Issuing is not in the trusted CA list",
        "slow.crl": re.escape(f"{urls['slow.crl']} failed: timed out after 0.5 s (2 attempts)"),
        "down": r"HTTP 503 Service Unavailable \(2 attempts\)",
        "missing.crl": r"HTTP 404 Not Found$",
        "refused": r"connection refused \(2 attempts\)$",
    }
    for key, pattern in expected.items():
        entry = by_url[urls[key]]
        assert isinstance(entry["error"], str) and re.search(pattern, entry["error"]), (
            key,
            entry,
        )
        assert entry["last_attempt"] == clock.now().isoformat()
        assert entry["last_success"] is None and entry["crl_number"] is None
        assert entry["next_update"] is None
    assert [(h.source, h.number) for h in node.revocation.held()] == [(urls["good.crl"], 1)]


# --------------------------------------------------------------------------- keep last good


def test_failed_fetch_keeps_the_last_good_crl(
    node: Node, server: LocalHttpServer, pki: Pki, clock: FixedClock
) -> None:
    revoked = pki.leaf("kept.example.com")
    first = pki.crl([(revoked, "keyCompromise")], number=10)
    server.routes["/flip.crl"] = pem(first)
    url = f"{server.url}/flip.crl"
    node.revocation.set_sources([url])
    node.revocation.update_now()
    success_at = clock.now().isoformat()
    assert status(node)[url]["crl_number"] == 10

    failures: list[tuple[bytes | Callable[[Handler], None], str]] = [
        (lambda h: send(h, b"oops", 500), "HTTP 500 Internal Server Error"),
        (b"garbage", "not a CRL"),
        (pem(pki.forged_crl(test_key("ec:p256", 235), number=11)), "bad signature"),
        (pem(pki.crl(number=9)), "CRL numbers never go backwards"),
        (server.slow(5.0), "timed out"),
    ]
    for route, message in failures:
        clock.advance(HOUR)
        server.routes["/flip.crl"] = route
        node.revocation.update_now()
        entry = status(node)[url]
        assert message in str(entry["error"]), entry
        assert entry["last_attempt"] == clock.now().isoformat()
        assert entry["last_success"] == success_at
        assert entry["crl_number"] == 10
        assert [(h.source, h.number) for h in node.revocation.held()] == [(url, 10)]
        assert node.client_check.check(pem(revoked)).result.code == "revoked"

    clock.advance(HOUR)
    server.routes["/flip.crl"] = der(pki.crl(number=11))  # a newer CRL: revocation lifted
    node.revocation.update_now()
    entry = status(node)[url]
    assert entry["error"] is None and entry["crl_number"] == 11
    assert entry["last_success"] == clock.now().isoformat()
    assert [(h.source, h.number) for h in node.revocation.held()] == [(url, 11)]
    assert node.client_check.check(pem(revoked)).result.valid


def test_removed_source_drops_its_crl(node: Node, server: LocalHttpServer, pki: Pki) -> None:
    server.routes.update({"/a.crl": der(pki.crl(number=1)), "/b.crl": der(pki.crl(number=1))})
    a, b = f"{server.url}/a.crl", f"{server.url}/b.crl"
    node.revocation.set_sources([f"{a}\n{b}\n", a])  # one per line, duplicates merged
    assert [s.url for s in node.revocation.sources()] == [a, b]
    node.revocation.update_now()
    assert sorted(h.source for h in node.revocation.held()) == [a, b]
    node.revocation.set_sources([b])
    assert [h.source for h in node.revocation.held()] == [b]
    assert status(node)[b]["crl_number"] == 1  # the status of a URL that stays is kept


@pytest.mark.parametrize(
    "urls",
    [["ftp://example.com/crl"], ["example.com/crl"], ["http://"], ["file:///etc/passwd"]],
)
def test_only_http_urls_are_accepted(node: Node, urls: list[str]) -> None:
    node.revocation.set_sources(["http://keep.example/crl"])
    with pytest.raises(PolicyViolation, match="is not an http:// or https:// URL"):
        node.revocation.set_sources(urls)
    assert [s.url for s in node.revocation.sources()] == ["http://keep.example/crl"]


# --------------------------------------------------------------------------- size limits


def test_oversized_download_and_bombs_are_refused(
    tmp_path: Path, clock: FixedClock, server: LocalHttpServer, pki: Pki
) -> None:
    node = make_node(tmp_path / "data", clock, max_bytes=MB)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        server.routes.update(
            {
                "/good.crl": der(pki.crl(number=1)),
                "/big.crl": bytes(2 * MB),
                "/bomb.gz": gzip_bomb(300),
                "/bomb.zip": zip_bomb(300),
            }
        )
        urls = {p: f"{server.url}{p}" for p in ("/good.crl", "/big.crl", "/bomb.gz", "/bomb.zip")}
        assert len(server.routes["/bomb.gz"]) < MB  # type: ignore[arg-type]
        assert len(server.routes["/bomb.zip"]) < MB  # type: ignore[arg-type]
        node.revocation.set_sources(list(urls.values()))
        node.revocation.update_now()
        by_url = status(node)
        assert by_url[urls["/good.crl"]]["error"] is None
        assert by_url[urls["/big.crl"]]["error"] == f"{urls['/big.crl']} is larger than {MB} bytes"
        for bomb in ("/bomb.gz", "/bomb.zip"):
            assert by_url[urls[bomb]]["error"] == (
                "the CRL archive unpacks to more than 268435456 bytes, the limit"
            )
        assert [h.source for h in node.revocation.held()] == [urls["/good.crl"]]
    finally:
        node.close()


# --------------------------------------------------------------------------- schedule


def test_daily_schedule(tmp_path: Path, server: LocalHttpServer) -> None:
    start = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
    clock = FixedClock(start)
    pki = Pki("Sched", at=start, index=230)
    node = make_node(tmp_path / "data", clock)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        server.routes["/crl"] = der(pki.crl(number=1, days=30))
        node.revocation.set_sources([f"{server.url}/crl"])
        assert node.revocation.schedule().enabled is False
        assert node.revocation.run_if_due() is False  # off: never due
        assert server.hits["/crl"] == 0

        schedule = node.revocation.set_schedule(daily_at="03:00", enabled=True)
        assert schedule.as_dict() == {"enabled": True, "daily_at": "03:00", "last_run": None}
        node.revocation.update_now()  # "update now" at 02:00 counts as today's run so far
        assert node.revocation.schedule().last_run == start
        assert server.hits["/crl"] == 1

        def tick(to: dt.datetime) -> bool:
            clock.advance(to - clock.now())
            return node.revocation.run_if_due()

        assert tick(start.replace(minute=30)) is False  # 02:30: before 03:00
        assert tick(start.replace(hour=3)) is True  # 03:00 sharp
        assert server.hits["/crl"] == 2
        assert node.revocation.schedule().last_run == start.replace(hour=3)
        assert tick(start.replace(hour=3, minute=1)) is False  # not twice the same day
        assert tick(start.replace(hour=23, minute=59)) is False
        assert tick(start.replace(hour=2, minute=59) + DAY) is False
        assert tick(start.replace(hour=3, minute=1) + DAY) is True  # the next day
        assert server.hits["/crl"] == 3
        assert tick(start.replace(hour=3, minute=1) + 3 * DAY) is True  # missed days: once
        assert tick(start.replace(hour=4) + 3 * DAY) is False
        assert server.hits["/crl"] == 4

        # The schedule survives a restart, and can be turned off.
        other = Node.open(tmp_path / "data", clock)
        try:
            assert other.revocation.schedule().daily_at == "03:00"
            other.revocation.set_schedule(enabled=False)
        finally:
            other.close()
        assert tick(start.replace(hour=3, minute=30) + 4 * DAY) is False
        assert server.hits["/crl"] == 4
    finally:
        node.close()


@pytest.mark.parametrize("bad", ["24:00", "3:00", "03:60", "noon", "03:00:00", ""])
def test_schedule_time_must_be_hh_mm(node: Node, bad: str) -> None:
    node.revocation.set_schedule(daily_at="04:15", enabled=True)
    with pytest.raises(PolicyViolation, match="is not a time of day HH:MM"):
        node.revocation.set_schedule(daily_at=bad)
    assert node.revocation.schedule().daily_at == "04:15"


# --------------------------------------------------------------------------- HTTPS


def test_https_sources_are_verified_against_the_trusted_ca_list(
    node: Node, pki: Pki, pki2: Pki, tmp_path: Path
) -> None:
    ip = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    crl = der(pki.crl(number=1))

    def https(owner: Pki, folder: str) -> LocalHttpServer:
        cert = owner.leaf("crl.example.com", profile="server", alt_names=ip)
        (tmp_path / folder).mkdir()
        context = tls_server_context(tmp_path / folder, cert, owner.leaf_key, [owner.intermediate])
        return LocalHttpServer({"/crl": crl}, tls=context)

    with https(pki, "trusted") as trusted, https(pki2, "untrusted") as untrusted:
        good, bad = f"{trusted.url}/crl", f"{untrusted.url}/crl"
        assert good.startswith("https://127.0.0.1:")
        node.revocation.set_sources([good, bad])
        node.revocation.update_now()
        by_url = status(node)
        assert by_url[good]["error"] is None and by_url[good]["crl_number"] == 1
        error = str(by_url[bad]["error"])
        assert error.startswith(f"TLS certificate of {bad} is not trusted"), error
        assert untrusted.hits["/crl"] == 0
        assert [h.source for h in node.revocation.held()] == [good]

        # Trusting the second CA makes its server acceptable at the next update.
        node.trusted_cas.add(pem(pki2.root))
        node.revocation.update_now()
        assert status(node)[bad]["error"] is None


# --------------------------------------------------------------------------- RV3 CDP


def test_cdp_download_is_cached_until_next_update(
    tmp_path: Path, clock: FixedClock, server: LocalHttpServer
) -> None:
    url = f"{server.url}/issuing.crl"
    pki = Pki("Cdp", at=NOW, index=260, crl_url=url)
    leaf = pki.leaf("cdp.example.com")
    current = {"crl": pki.crl(number=1, days=1)}
    server.routes["/issuing.crl"] = lambda h: send(h, der(current["crl"]))
    node = make_node(tmp_path / "data", clock)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        node.revocation.set_policy("sip-tls", ocsp=False, crl=True, cdp=True, scope="peer")

        first = node.client_check.check(pem(leaf), service="sip-tls").result
        assert first.valid and first.certificates[0].status == "good"
        checks = {c.name: (c.outcome, c.text) for c in first.certificates[0].checks}
        assert checks["crl"] == ("unknown", "no CRL is held for CN=Cdp Issuing")
        assert checks["cdp"][0] == "good"
        assert checks["cdp"][1].startswith(f"not revoked per CRL #1 from {url}")
        assert server.hits["/issuing.crl"] == 1

        clock.advance(12 * HOUR)
        assert node.client_check.check(pem(leaf), service="sip-tls").result.valid
        assert server.hits["/issuing.crl"] == 1  # cached until nextUpdate
        # The admin-https policy does no CDP download at all.
        node.client_check.check(pem(leaf), service="admin-https")
        assert server.hits["/issuing.crl"] == 1

        current["crl"] = pki.crl(
            [(leaf, "cessationOfOperation")], number=2, this_update=NOW + 23 * HOUR, days=1
        )
        clock.advance(12 * HOUR)  # past the cached CRL's nextUpdate
        after = node.client_check.check(pem(leaf), service="sip-tls").result
        assert server.hits["/issuing.crl"] == 2
        assert after.code == "revoked"
        assert after.reason.endswith(f"(cessationOfOperation) by CRL #2 from {url}")
        node.client_check.check(pem(leaf), service="sip-tls")
        assert server.hits["/issuing.crl"] == 2
    finally:
        node.close()


# --------------------------------------------------------------------------- RV4 OCSP


@pytest.fixture
def real_clock() -> FixedClock:
    """openssl signs answers at the real time: validate at the real time too."""
    return FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.mark.interop
def test_ocsp_against_openssl_responder(
    openssl: str, tmp_path: Path, real_clock: FixedClock
) -> None:
    now = real_clock.now()
    pki = Pki("Ocsp", at=now, index=270)
    revoked_at = (now - 2 * DAY).replace(microsecond=0)
    responder = OpensslOcspResponder(
        openssl,
        tmp_path / "ocsp",
        pki.intermediate,
        pki.int_key,
        good=[0x1001],
        revoked=[(0x1002, revoked_at, "keyCompromise")],
    )
    node = make_node(tmp_path / "data", real_clock, timeout=5)
    try:
        url = f"{responder.url}/ocsp"
        issuer = Issuer(pki.intermediate, pki.int_key, ocsp_url=url)
        good, revoked, unlisted = (
            pki.leaf(f"{n}.example.com", serial=s, issuer=issuer)
            for n, s in (("good", 0x1001), ("revoked", 0x1002), ("unlisted", 0x1003))
        )
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        node.revocation.set_policy("sip-tls", crl=False, cdp=False, scope="peer")

        def check(cert: x509.Certificate) -> object:
            return node.client_check.check(pem(cert), service="sip-tls").result

        ok = check(good)
        assert ok.valid and ok.certificates[0].status == "good"  # type: ignore[attr-defined]
        assert [(c.name, c.outcome, c.text) for c in ok.certificates[0].checks] == [  # type: ignore[attr-defined]
            ("path", "pass", "chains to a trusted CA"),
            ("ocsp", "good", "OCSP: good (CA itself)"),
        ]

        bad = check(revoked)
        assert bad.code == "revoked" and bad.failed_index == 0  # type: ignore[attr-defined]
        assert bad.reason == (  # type: ignore[attr-defined]
            f"the certificate is revoked on {revoked_at:%Y-%m-%d} (keyCompromise) "
            f"by OCSP responder {url}"
        )

        unknown = check(unlisted)
        assert unknown.valid  # type: ignore[attr-defined]
        outcomes = [(c.name, c.outcome, c.text) for c in unknown.certificates[0].checks]  # type: ignore[attr-defined]
        assert ("ocsp", "unknown", f"OCSP responder {url} answered unknown") in outcomes
        assert ("revocation", "unknown", "status unknown: treated as not revoked") in outcomes
        assert responder.calls == 3

        # Answers are cached until their nextUpdate (-ndays 1).
        assert check(good).valid  # type: ignore[attr-defined]
        assert check(revoked).code == "revoked"  # type: ignore[attr-defined]
        assert responder.calls == 3

        node.revocation.set_policy("sip-tls", fallback="revoked")
        strict = check(unlisted)
        assert strict.code == "revocation-unknown"  # type: ignore[attr-defined]
        assert strict.reason == (  # type: ignore[attr-defined]
            "revocation status of the certificate cannot be determined and the policy "
            "treats that as revoked"
        )
    finally:
        node.close()
        responder.close()


@pytest.mark.parametrize("source", ["ocsp", "cdp"])
@pytest.mark.parametrize("failure", ["refused", "timeout"])
def test_fallback_when_the_source_is_down_or_times_out(
    tmp_path: Path, clock: FixedClock, source: str, failure: str
) -> None:
    with LocalHttpServer() as slow:
        slow.routes["/x"] = slow.slow(5.0)
        url = refused_url("/x") if failure == "refused" else f"{slow.url}/x"
        pki = Pki(
            "Fallback",
            at=NOW,
            index=280,
            ocsp_url=url if source == "ocsp" else None,
            crl_url=url if source == "cdp" else None,
        )
        leaf = pki.leaf("fallback.example.com")
        node = make_node(tmp_path / "data", clock, timeout=0.3)
        try:
            node.trusted_cas.add(pem(pki.root, pki.intermediate))
            node.revocation.set_policy(
                "sip-tls", crl=False, ocsp=source == "ocsp", cdp=source == "cdp", scope="peer"
            )
            lenient = node.client_check.check(pem(leaf), service="sip-tls").result
            assert lenient.valid
            assert lenient.certificates[0].status == "unknown"
            checks = [(c.name, c.outcome, c.text) for c in lenient.certificates[0].checks]
            what = "OCSP failed" if source == "ocsp" else "CRL download failed"
            why = "connection refused" if failure == "refused" else "timed out after 0.3 s"
            [failed] = [c for c in checks if c[0] == source]
            assert failed[1] == "unknown"
            assert failed[2] == f"{what}: fetching {url} failed: {why} (2 attempts)"
            assert checks[-1] == ("revocation", "unknown", "status unknown: treated as not revoked")

            node.revocation.set_policy("sip-tls", fallback="revoked")
            strict = node.client_check.check(pem(leaf), service="sip-tls").result
            assert not strict.valid
            assert strict.code == "revocation-unknown" and strict.failed_index == 0
            assert strict.certificates[0].status == "unknown"
        finally:
            node.close()
    if failure == "timeout":
        # Two attempts by the first validation; the second does not wait out the dead
        # source again (failures are remembered for 30 s).
        assert slow.hits["/x"] == 2
