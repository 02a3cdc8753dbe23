"""Slow revocation servers: a CRL source, CRL distribution point or OCSP responder that sends
one byte every half second (every single read succeeds, so only an overall deadline stops it).

Before the fix such a server held ``certway check`` and ``crl update-now`` for as long as it
liked, and eight of them exhausted the thread pool shared with the SIP listener, the hot-reload
poller and the scheduler. Now every fetch ends at its deadline with an error naming the URL,
the last good CRL stays in use, and fetches hold a bounded number of slots of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.errors import FetchError
from certway.fetch import FetchPool, FetchPoolBusy, HttpFetcher, tls_context_for
from certway.pki.issue import create_root
from certway.services.audit import SYSTEM, Actor, acting_as, current_actor
from certway.services.node import Node
from certway.services.revocation import FetchLimits

from conftest import NOW, Cli, key_pem, test_key, write
from pkitools import Pki, name
from revocation_servers import LocalHttpServer, der, pem, tls_server_context
from serving import running

DRIP = 0.5
"""Seconds between two bytes of a dripping server (far below any per-read timeout)."""
DEADLINE = 2.0
OUTER = 60
"""A generous bound on any wait of these tests, so that a regression fails instead of hanging."""
T = TypeVar("T")


def deadline_error(url: str, seconds: float = DEADLINE) -> str:
    return f"fetching {url} failed: no complete answer within the {seconds:g} s deadline"


def bounded(call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own: a regression that hangs fails after ``OUTER``
    seconds instead of hanging the suite."""
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    try:
        return outcome.result(timeout=OUTER)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"did not return within {OUTER} s")


def fetch_error(call: Callable[[], object]) -> str:
    """The message of the ``FetchError`` that ``call()`` raises (within ``OUTER`` s)."""

    def failing() -> str:
        with pytest.raises(FetchError) as info:
            call()
        return str(info.value)

    return bounded(failing)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + OUTER
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture
def drip() -> Iterator[LocalHttpServer]:
    """``/body`` trickles a body after complete headers, ``/headers`` trickles the headers."""
    with LocalHttpServer() as http:
        http.routes["/body"] = http.drip(interval=DRIP)
        http.routes["/headers"] = http.drip(interval=DRIP, headers_done=False)
        yield http


# --------------------------------------------------------------------------- the fetcher


@pytest.mark.parametrize("path", ["/body", "/headers"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trickling_server_is_cut_off_at_the_deadline(
    drip: LocalHttpServer, path: str, method: str
) -> None:
    url = f"{drip.url}{path}"
    with HttpFetcher(deadline=DEADLINE) as fetcher:
        if method == "GET":
            error = fetch_error(lambda: fetcher.get(url))
        else:
            error = fetch_error(lambda: fetcher.post(url, b"request", "application/ocsp-request"))
    assert error == deadline_error(url)
    assert drip.hits[path] == 1  # no retry once the deadline has passed


@pytest.mark.parametrize("path", ["/body", "/headers"])
def test_a_trickling_https_server_is_cut_off_at_the_deadline(path: str, tmp_path: Path) -> None:
    pki = Pki("Drip TLS", at=dt.datetime.now(dt.UTC), index=930)  # TLS: the real clock
    ip = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = pki.leaf("crl.example.com", profile="server", alt_names=ip)
    context = tls_server_context(tmp_path, cert, pki.leaf_key, [pki.intermediate])
    with LocalHttpServer(tls=context) as https:
        https.routes[path] = https.drip(interval=DRIP, headers_done=path == "/body")
        url = f"{https.url}{path}"
        verify = tls_context_for([pki.root])
        with HttpFetcher(deadline=DEADLINE, verify=verify) as fetcher:
            assert fetch_error(lambda: fetcher.get(url)) == deadline_error(url)


def test_a_call_may_set_its_own_deadline(drip: LocalHttpServer) -> None:
    url = f"{drip.url}/body"
    with HttpFetcher(deadline=600) as fetcher:
        assert fetch_error(lambda: fetcher.get(url, deadline=1)) == deadline_error(url, 1)


def test_the_fetch_pool_refuses_instead_of_queueing() -> None:
    pool = FetchPool(slots=1)
    with pool.slot("http://a.example/ocsp"):
        with pytest.raises(FetchPoolBusy) as info, pool.slot("http://b.example/ocsp"):
            pass  # pragma: no cover
        assert str(info.value) == (
            "http://b.example/ocsp was not asked: all 1 revocation fetch slots are busy"
        )
    with pool.slot("http://b.example/ocsp"):  # free again
        pass


def test_work_on_the_fetch_pool_acts_as_its_caller() -> None:
    """The scheduler's work on the pool (CRL source update, ACME renewals) is audited as
    the caller's actor (the system), not as the local OS user a thread falls back to."""
    pool = FetchPool(slots=1)

    async def as_system() -> Actor:
        with acting_as(SYSTEM):
            return await pool.run(current_actor)

    try:
        assert asyncio.run(as_system()) == Actor("certway", "system")
    finally:
        pool.close()


# --------------------------------------------------------------------------- services


def test_crl_update_now_keeps_the_last_good_crl_when_the_source_trickles(
    tmp_path: Path, clock: FixedClock, drip: LocalHttpServer
) -> None:
    pki = Pki("Drip Source", at=NOW, index=900)
    revoked = pki.leaf("revoked.example.com")
    drip.routes["/issuing.crl"] = der(pki.crl([(revoked, "keyCompromise")], number=3))
    limits = FetchLimits(update_deadline=DEADLINE)
    node = Node.init(tmp_path / "data", clock, fetch_limits=limits, factory=False)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        url = f"{drip.url}/issuing.crl"
        node.revocation.set_sources([url])
        [good] = node.revocation.update_now()
        assert good.error is None and good.crl_number == 3

        drip.routes["/issuing.crl"] = drip.drip(interval=DRIP)
        [failed] = bounded(node.revocation.update_now)
        assert failed.error == deadline_error(url)
        assert failed.last_success == good.last_success and failed.crl_number == 3
        assert [(h.source, h.number, h.status) for h in node.revocation.held()] == [
            (url, 3, "current")
        ]
        # ... and the kept CRL still decides
        report = node.client_check.check(pem(revoked), service="admin-https")
        assert report.result.code == "revoked", report.result.reason
    finally:
        node.close()


def test_a_responder_cut_off_at_the_deadline_is_not_asked_again_at_once(
    tmp_path: Path, clock: FixedClock, drip: LocalHttpServer
) -> None:
    ocsp = f"{drip.url}/ocsp"
    drip.routes["/ocsp"] = drip.drip(interval=DRIP)
    pki = Pki("Drip Memory", at=NOW, index=970, ocsp_url=ocsp)
    limits = FetchLimits(validation_deadline=DEADLINE)
    node = Node.init(tmp_path / "data", clock, fetch_limits=limits, factory=False)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        leaf = pem(pki.leaf("memory.example.com"))

        def ocsp_check() -> str:
            report = bounded(lambda: node.client_check.check(leaf, service="sip-tls"))
            [text] = [
                c.text for r in report.result.certificates for c in r.checks if c.name == "ocsp"
            ]
            return text

        assert ocsp_check() == f"OCSP failed: {deadline_error(ocsp)}"
        assert ocsp_check() == f"OCSP failed: {deadline_error(ocsp)} (not retried for 30 s)"
        assert drip.hits["/ocsp"] == 1
        assert node.revocation.responder_failures()[ocsp]["error"] == deadline_error(ocsp)
    finally:
        node.close()


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_update_now_and_check_end_at_the_deadline(
    cli: Cli, tmp_path: Path, drip: LocalHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTWAY_FETCH_DEADLINE", str(DEADLINE))
    monkeypatch.setenv("CERTWAY_CRL_UPDATE_DEADLINE", str(DEADLINE))
    now = dt.datetime.now(dt.UTC)  # the CLI runs on the real clock
    ocsp, cdp, source = (f"{drip.url}{p}" for p in ("/ocsp", "/cdp.crl", "/issuing.crl"))
    pki = Pki("Drip Cli", at=now, index=910, ocsp_url=ocsp)
    other = Pki("Drip Cdp", at=now, index=920, crl_url=cdp, ocsp_url=ocsp)
    cli.ok("trust", "add", write(tmp_path / "cas.pem", pem(pki.root, pki.intermediate)))
    cli.ok("trust", "add", write(tmp_path / "other.pem", pem(other.root, other.intermediate)))
    revoked = pki.leaf("revoked.example.com")
    revoked_file = write(tmp_path / "revoked.pem", pem(revoked))
    drip.routes["/issuing.crl"] = der(pki.crl([(revoked, "keyCompromise")], number=7))
    cli.ok("crl", "sources", "set", source)
    assert f"{source}: CRL #7" in cli.ok("crl", "update-now").stdout

    # the source now trickles: update-now reports the deadline, the CRL stays
    for path in ("/issuing.crl", "/ocsp", "/cdp.crl"):
        drip.routes[path] = drip.drip(interval=DRIP)
    update = bounded(lambda: cli.ok("crl", "update-now"))
    assert f"{source}: {deadline_error(source)}" in update.stderr
    held = json.loads(cli.ok("crl", "list", "--json").stdout)
    assert [(h["source"], h["number"]) for h in held] == [(source, 7)]

    # OCSP trickles: unknown after the deadline, then the kept CRL says revoked
    check = bounded(lambda: cli("check", revoked_file, "--service", "sip-tls"))
    assert check.exit_code == 1, check.stderr
    assert f"ocsp: unknown - OCSP failed: {deadline_error(ocsp)}" in check.stdout
    assert "crl: revoked" in check.stdout

    # OCSP and the CRL distribution point trickle: both unknown, the fallback decides
    leaf = write(tmp_path / "cdp.pem", pem(other.leaf("cdp.example.com")))
    check = bounded(lambda: cli("check", leaf, "--service", "sip-tls"))
    assert check.exit_code == 0, check.stdout
    assert f"ocsp: unknown - OCSP failed: {deadline_error(ocsp)}" in check.stdout
    assert f"cdp: unknown - CRL download failed: {deadline_error(cdp)}" in check.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CERTWAY_FETCH_DEADLINE", "soon", "a number of seconds from 0.5 to 600, not 'soon'"),
        ("CERTWAY_CRL_UPDATE_DEADLINE", "0", "a number of seconds from 0.5 to 600, not '0'"),
        ("CERTWAY_FETCH_DEADLINE", "nan", "a number of seconds from 0.5 to 600, not 'nan'"),
        ("CERTWAY_FETCH_SLOTS", "1000", "a whole number from 1 to 64, not '1000'"),
    ],
)
def test_bad_fetch_limits_are_refused(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = cli("crl", "list")
    assert result.exit_code == 2
    assert f"error: {variable} must be {message}" in result.stderr


# --------------------------------------------------------------------------- serving


class SipPeer:
    def __init__(self, folder: Path, label: str, pki: Pki, cert: x509.Certificate) -> None:
        self.chain = write(folder / f"{label}.crt", pem(cert, pki.intermediate))
        self.key = write(folder / f"{label}.key", key_pem(pki.leaf_key))


def sip_options(port: int, server_ca: x509.Certificate, peer: SipPeer) -> str:
    """A SIP OPTIONS over mutual TLS; the first line of the answer ('' if none came)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(
        cadata=server_ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    context.load_cert_chain(peer.chain, peer.key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=OUTER)
    data = b""
    with context.wrap_socket(raw, server_hostname="sip.example.com") as tls:
        try:
            tls.sendall(
                b"OPTIONS sip:sip.example.com SIP/2.0\r\n"
                b"Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK-1\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:ping@peer.example.com>;tag=1\r\n"
                b"To: <sip:sip.example.com>\r\nCall-ID: slow-fetch@peer\r\n"
                b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            while b"\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, ConnectionError):
            pass  # refused: closed without an answer
    return data.decode().split("\r\n")[0]


def test_saturated_fetch_slots_starve_neither_sip_nor_poller_nor_scheduler(
    tmp_path: Path, drip: LocalHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduled CRL update and ten SIP peers whose CRL source and OCSP responder trickle.
    The update and seven peers hold the eight fetch slots, the three other peers get
    "unknown" at once (the fallback accepts them); meanwhile a peer that needs no fetch is
    answered, a settings change is picked up by the poller and the scheduler logs an alarm.
    Before, eight such peers blocked the default executor (here 4 threads, so that the test
    does not depend on the CPU count) and with it every one of those."""
    caplog.set_level(logging.INFO)
    now = dt.datetime.now(dt.UTC)  # the peers' TLS handshakes run on the real clock
    ocsp, source = f"{drip.url}/ocsp", f"{drip.url}/issuing.crl"
    drip.routes["/ocsp"] = drip.routes["/issuing.crl"] = drip.drip(interval=DRIP)
    slow_pki = Pki("Slow Responder", at=now, index=940, ocsp_url=ocsp)
    quiet_pki = Pki("No Fetch", at=now, index=950)
    # long deadlines: the slow fetches hold their slots for the whole test
    limits = FetchLimits(validation_deadline=OUTER * 2, update_deadline=OUTER * 2, slots=8)
    node = Node.init(tmp_path / "data", fetch_limits=limits, fqdn="sip.example.com")
    peers = concurrent.futures.ThreadPoolExecutor(max_workers=10)
    try:
        for pki in (slow_pki, quiet_pki):
            node.trusted_cas.add(pem(pki.root, pki.intermediate))
        node.revocation.set_sources([source])
        node.revocation.set_schedule(daily_at="00:00", enabled=True)  # due at once
        server_ca = node.identities.temporary_ca()
        assert server_ca is not None
        slow = SipPeer(tmp_path, "slow", slow_pki, slow_pki.leaf("slow.example.com"))
        quiet = SipPeer(tmp_path, "quiet", quiet_pki, quiet_pki.leaf("quiet.example.com"))

        with running(node, publish=False, scheduler_interval=0.2, default_workers=4) as server:
            wait_for(lambda: drip.hits["/issuing.crl"] == 1, "the scheduled update started")
            port = server.sip_port
            slow_peers = [peers.submit(sip_options, port, server_ca, slow) for _ in range(10)]

            def answered() -> list[concurrent.futures.Future[str]]:
                return [f for f in slow_peers if f.done()]

            wait_for(lambda: len(answered()) == 3, "three slow peers answered")
            assert [f.result() for f in answered()] == ["SIP/2.0 200 OK"] * 3
            wait_for(lambda: drip.hits["/ocsp"] == 7, "seven OCSP requests under way")
            assert any(
                "event=revocation-fetch-skipped reason=all-slots-busy slots=8" in r.getMessage()
                and f"url='{ocsp}'" in r.getMessage()
                for r in caplog.records
            )

            # a peer that needs no fetch is answered
            assert bounded(lambda: sip_options(port, server_ca, quiet)) == "SIP/2.0 200 OK"

            # the poller picks up a change: the quiet peer is now denied
            node.sip.add_rule(priority=1, type="exact", pattern="quiet.example.com", action="deny")
            wait_for(lambda: sip_options(port, server_ca, quiet) == "", "the rule applied")

            # the scheduler logs an alarm raised now
            expiring = create_root(
                test_key("ec:p256", 960),
                name("Expiring Soon CA"),
                not_before=now - dt.timedelta(days=1),
                not_after=now + dt.timedelta(days=3),
            )
            node.trusted_cas.add(pem(expiring))
            wait_for(
                lambda: any(
                    "event=alarm" in r.getMessage() and "Expiring Soon CA" in r.getMessage()
                    for r in caplog.records
                ),
                "the scheduler logged the new alarm",
            )

            # all of that while the slow fetches were still under way
            assert len(answered()) == 3
            assert (drip.hits["/ocsp"], drip.hits["/issuing.crl"]) == (7, 1)
            assert node.revocation.sources()[0].last_attempt is None
            drip.stop.set()  # the servers give up: everything completes
            results = [f.result(timeout=OUTER) for f in slow_peers]
            assert results == ["SIP/2.0 200 OK"] * 10
            wait_for(
                lambda: node.revocation.sources()[0].error is not None,
                "the scheduled update recorded its failure",
            )
    finally:
        drip.stop.set()
        peers.shutdown(wait=True, cancel_futures=True)
        node.close()
