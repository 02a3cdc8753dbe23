"""The zone pinger: SIP OPTIONS over TLS to each neighbour peer, status per zone.

For each peer of a zone the pinger opens a TLS connection presenting the node's client
certificate (``identities.active("client")``, which defaults to the server certificate),
checks the certificate the peer presented with certway's trust engine — not OpenSSL's, so a
failure has a precise reason — sends one ``OPTIONS sip:<peer>:<port>;transport=tls`` and reads
the answer with ``SipFramer``. The outcome is a ``PeerStatus``; the zone's ``ZoneStatus`` is
recorded in the store by ``services.zones.Zones.record``.

Checks with TLS verify mode on (see ``services.zones`` for the definitions):

- the chain must lead to the trusted CA list, through the intermediates the peer presented
  (untrusted, never anchors) and the trusted list;
- the certificate must be within its validity period and, when it has an EKU, allow
  serverAuth;
- revocation per the ``sip-tls`` policy: the node's own CAs' records for what they issued
  (effective at once), the revocation engine (held CRLs, OCSP, CDP downloads) for the rest;
- the name: the peer address must be in the subject alternative names — an IP address SAN for
  an IP address, a DNS SAN for a DNS name (a left-most ``*`` label matches one label). With a
  TLS verify subject name, that name must be there instead (SAN, or the CN when the
  certificate has no SAN entry of that type).

With TLS verify mode off the connection is still TLS with the client certificate, but the
peer's certificate is not judged.

Failure reasons: ``untrusted`` (no chain to the trusted list, wrong EKU, no or malformed
certificate), ``name mismatch``, ``revoked`` (also: status unknown under a policy that treats
unknown as revoked), ``expired`` (or not yet valid), ``refused`` (TCP connection refused, TLS
handshake failed — e.g. the peer requires a client certificate it does not accept —, or the
peer closed the connection or answered something that is not SIP), ``timeout`` (no connection,
handshake or answer within the time limit), ``unreachable`` (name does not resolve, no route).
Any final SIP response counts as alive (see ``services.zones``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import secrets
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509

from certway.errors import CertwayError
from certway.pki.names import common_name
from certway.pki.text import format_name
from certway.services.peer_validation import presented_certificates
from certway.services.sip_settings import SIP_SERVICE
from certway.services.zones import PeerStatus, Zone, Zones, ZoneStatus
from certway.sip.message import Keepalive, Message, SipError, SipFramer
from certway.tls.contexts import client_context
from certway.tlsconf.presented import presented_chain
from certway.trust.validate import Purpose, ValidationOptions

if TYPE_CHECKING:
    from certway.services.node import Node

__all__ = [
    "DEFAULT_TIMEOUT",
    "CertificateVerdict",
    "ZonePinger",
    "check_zone",
    "check_zone_now",
    "options_request",
    "run_pinger",
    "verify_peer_certificate",
]

log = logging.getLogger("certway.sip.zones")
DEFAULT_TIMEOUT = 10.0
"""Seconds a ping may take in all: TCP connect, TLS handshake, checks and the answer."""
_READ_SIZE = 16 * 1024
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTDOWN}
_CODES = {
    "untrusted": "untrusted",
    "expired": "expired",
    "revoked": "revoked",
    "revocation-unknown": "revoked",
    "name-mismatch": "name mismatch",
}


# -- the peer certificate ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CertificateVerdict:
    """The judgement of a peer certificate: ``reason`` None means it passed."""

    reason: str | None
    detail: str
    subject: str | None = None

    @property
    def passed(self) -> bool:
        return self.reason is None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _dns_matches(pattern: str, name: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _names_text(cert: x509.Certificate) -> str:
    san = _san(cert)
    names = [*(f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName))] if san else []
    if san:
        names += [f"IP:{n}" for n in san.get_values_for_type(x509.IPAddress)]
    cn = common_name(cert.subject)
    if cn:
        names.append(f"CN={cn}")
    return ", ".join(names) or "no names"


def _name_check(cert: x509.Certificate, wanted: str, *, allow_cn: bool) -> str | None:
    """None when ``cert`` names ``wanted``; else the sentence saying it does not."""
    san = _san(cert)
    if _is_ip(wanted):
        address = ipaddress.ip_address(wanted)
        ips = san.get_values_for_type(x509.IPAddress) if san else []
        if address in ips:
            return None
        kind = "an IP address"
    else:
        dns = san.get_values_for_type(x509.DNSName) if san else []
        if any(_dns_matches(d, wanted) for d in dns):
            return None
        kind = "a DNS"
    if allow_cn:
        cn = common_name(cert.subject)
        if cn and cn.lower().rstrip(".") == wanted.lower().rstrip("."):
            return None
    where = "subject alternative name or common name" if allow_cn else "subject alternative name"
    return (
        f"the certificate does not carry '{wanted}' as {kind} {where} "
        f"(it names {_names_text(cert)})"
    )


def verify_peer_certificate(
    node: Node, zone: Zone, address: str, der: bytes | None, intermediates: Sequence[bytes] = ()
) -> CertificateVerdict:
    """Judge the certificate peer ``address`` of ``zone`` presented, with the certificates it
    presented after it (``intermediates``, DER: untrusted, for path building only). Blocking:
    run it in a thread; OCSP and CDP lookups may go to the network."""
    if der is None:
        return CertificateVerdict("untrusted", "the peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
        subject = format_name(cert.subject) or "an empty subject"
    except ValueError:
        return CertificateVerdict("untrusted", "the peer certificate cannot be parsed")
    expected = zone.expected_name(address)
    if expected is None:
        return CertificateVerdict(None, "TLS verify mode is off", subject)
    state = node.peer_validation.state(SIP_SERVICE)
    result = state.validate(
        cert,
        presented_certificates(intermediates),
        options=ValidationOptions.for_peer(Purpose.SERVER),
        at=node.clock.now(),
    )
    if not result.valid:
        reason = _CODES.get(result.code or "", "untrusted")
        return CertificateVerdict(reason, f"certificate {subject}: {result.reason}", subject)
    mismatch = _name_check(cert, expected, allow_cn=zone.verify_subject is not None)
    if mismatch is not None:
        return CertificateVerdict("name mismatch", mismatch, subject)
    return CertificateVerdict(None, f"certificate {subject} is valid for '{expected}'", subject)


# -- TLS and SIP -------------------------------------------------------------------------------
def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def options_request(
    address: str,
    port: int,
    *,
    local: tuple[str, int],
    from_host: str,
    call_id: str | None = None,
) -> tuple[bytes, str]:
    """An OPTIONS request to ``address:port`` over TLS and its Call-ID."""
    branch = "z9hG4bK" + secrets.token_hex(10)
    tag = secrets.token_hex(6)
    call_id = call_id or f"{secrets.token_hex(12)}@{from_host}"
    target = f"sip:{_host(address)}:{port};transport=tls"
    lines = [
        f"OPTIONS {target} SIP/2.0",
        f"Via: SIP/2.0/TLS {_host(local[0])}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:ping@{_host(from_host)}>;tag={tag}",
        f"To: <{target}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        "User-Agent: certway",
        "Accept: application/sdp",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"), call_id


def _ssl_text(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


class _Failure(Exception):
    def __init__(self, reason: str, detail: str, subject: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.subject = subject


async def _read_answer(reader: asyncio.StreamReader, call_id: str) -> Message:
    """The final response to our request (provisional ones and pings are skipped)."""
    framer = SipFramer()
    while True:
        try:
            data = await reader.read(_READ_SIZE)
        except ssl.SSLError as exc:
            raise _Failure(
                "refused",
                f"the peer ended the TLS connection without answering ({_ssl_text(exc)}): "
                "it does not accept our client certificate",
            ) from None
        except ConnectionError:
            raise _Failure("refused", "the peer reset the connection without answering") from None
        if not data:
            raise _Failure("refused", "the peer closed the connection without answering")
        try:
            items = framer.feed(data)
        except SipError as exc:
            raise _Failure("refused", f"the peer's answer is not valid SIP: {exc.detail}") from None
        for item in items:
            if isinstance(item, Keepalive) or item.is_request or item.status is None:
                continue
            if item.header("Call-ID") != call_id or item.status < 200:
                continue
            return item


# -- the pinger --------------------------------------------------------------------------------
class ZonePinger:
    """Checks zones for one node; ``check`` pings every peer of a zone and records the status."""

    def __init__(self, node: Node, zones: Zones, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.node = node
        self.zones = zones
        self.timeout = timeout
        self._context: tuple[tuple[Any, ...], ssl.SSLContext] | None = None

    def _prepare(self) -> tuple[ssl.SSLContext, str, bool]:
        """The client TLS context (rebuilt when the client certificate changes), the host for
        From, and whether a client certificate is presented."""
        identities = self.node.identities
        identity = identities.active("client")
        marker = (
            None
            if identity is None
            else (identity.kind, identity.name, identity.version, identity.key_id)
        )
        profile = self.node.tls.profile("zones")
        cached = self._context
        if cached is None or cached[0] != (marker, profile):
            key = identities.private_key(identity) if identity is not None else None
            cached = self._context = ((marker, profile), client_context(identity, key, profile))
        return cached[1], self.node.settings.get().fqdn, identity is not None

    async def ping(self, zone: Zone, address: str) -> PeerStatus:
        """One OPTIONS ping to ``address``; never raises for network or peer trouble."""
        context, from_host, has_cert = await asyncio.to_thread(self._prepare)
        response: str | None = None
        subject: str | None = None
        reason: str | None = None
        step = ["connecting"]
        where = f"{_host(address)}:{zone.port}"
        try:
            async with asyncio.timeout(self.timeout):
                response, subject = await self._exchange(
                    zone, address, context, from_host, has_cert, step
                )
        except _Failure as exc:
            reason, detail = exc.reason, exc.detail
            subject = exc.subject
        except CertwayError as exc:  # e.g. the store or a revocation source failed mid-check
            reason, detail = "unreachable", f"the check of {where} could not finish: {exc}"
        except TimeoutError:
            reason = "timeout"
            phase = {
                "connecting": f"no TCP connection and TLS handshake with {where}",
                "checking": "the peer certificate could not be checked",
                "answering": f"no answer to OPTIONS from {where}",
            }[step[0]]
            detail = f"{phase} within {self.timeout:g} s"
        else:
            detail = f"answered {response}"
        at = await asyncio.to_thread(self.node.clock.now)
        return PeerStatus(address, reason is None, reason, detail, at, response, subject)

    async def _exchange(
        self,
        zone: Zone,
        address: str,
        context: ssl.SSLContext,
        from_host: str,
        has_cert: bool,
        step: list[str],
    ) -> tuple[str, str | None]:
        """Connect, check, ask, read; ``step[0]`` says how far it got (for a timeout)."""
        where = f"{_host(address)}:{zone.port}"
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    zone.port,
                    ssl=context,
                    server_hostname=None if _is_ip(address) else address,
                    # the overall timeout of ``ping`` comes first
                    ssl_handshake_timeout=self.timeout + 5,
                )
            except socket.gaierror as exc:
                raise _Failure(
                    "unreachable", f"'{address}' cannot be resolved: {exc.strerror}"
                ) from None
            except ConnectionRefusedError:
                raise _Failure("refused", f"{where} refused the TCP connection") from None
            except ssl.SSLError as exc:
                hint = "" if has_cert else " (the node has no client certificate)"
                raise _Failure(
                    "refused", f"the TLS handshake with {where} failed: {_ssl_text(exc)}{hint}"
                ) from None
            except ConnectionError:
                raise _Failure(
                    "refused", f"{where} closed the connection during the TLS handshake"
                ) from None
            except OSError as exc:
                if exc.errno in _UNREACHABLE:
                    detail = f"{where} is unreachable: {exc.strerror}"
                    raise _Failure("unreachable", detail) from None
                raise _Failure(
                    "unreachable", f"cannot connect to {where}: {exc.strerror or exc}"
                ) from None
            step[0] = "checking"
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            verdict = await self.node.fetch_pool.run(  # it may fetch OCSP answers / CRLs
                verify_peer_certificate,
                self.node,
                zone,
                address,
                der,
                presented_chain(ssl_object),
            )
            if not verdict.passed:
                raise _Failure(verdict.reason or "untrusted", verdict.detail, verdict.subject)
            step[0] = "answering"
            local = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
            request, call_id = options_request(
                address, zone.port, local=(str(local[0]), int(local[1])), from_host=from_host
            )
            try:
                writer.write(request)
                await writer.drain()
            except ssl.SSLError as exc:
                raise _Failure(
                    "refused", f"the peer ended the TLS connection ({_ssl_text(exc)})"
                ) from None
            except ConnectionError:
                raise _Failure("refused", "the peer closed the connection") from None
            answer = await _read_answer(reader, call_id)
            return f"{answer.status} {answer.reason}", verdict.subject
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def check(self, zone: Zone) -> ZoneStatus:
        """Ping every peer of ``zone`` at once, record the zone's status and return it."""
        peers = await asyncio.gather(*(self.ping(zone, a) for a in zone.peers))
        status = ZoneStatus.of(zone.name, peers)
        previous = await asyncio.to_thread(self.zones.record, zone, status)
        if previous is None or (previous.state, previous.reason) != (status.state, status.reason):
            level = logging.INFO if status.active else logging.WARNING
            log.log(
                level,
                "event=zone-status zone=%s state=%s reason=%s detail=%r",
                zone.name,
                status.state,
                status.reason or "-",
                status.detail,
            )
        return status

    def check_now(self, name: str) -> ZoneStatus:
        """Check zone ``name`` at once (blocking; for the CLI and the API)."""
        zone = self.zones.get(name)
        return asyncio.run(self.check(zone))


async def check_zone(
    node: Node, name: str, *, timeout: float = DEFAULT_TIMEOUT
) -> tuple[Zone, ZoneStatus]:
    """An administrator's "check now": ping the peers of zone ``name`` at once, record the
    zone's status and return the zone with it. ``NotFound`` for an unknown zone; a peer that
    cannot be reached or fails is a Failed status, not an error."""
    zone = await asyncio.to_thread(node.zones.get, name)
    return zone, await ZonePinger(node, node.zones, timeout=timeout).check(zone)


def check_zone_now(node: Node, name: str, *, timeout: float = DEFAULT_TIMEOUT) -> ZoneStatus:
    """``check_zone`` from a thread without an event loop (the CLI, a worker thread)."""
    return ZonePinger(node, node.zones, timeout=timeout).check_now(name)


async def run_pinger(
    node: Node,
    zones: Zones,
    stop_event: asyncio.Event,
    *,
    tick: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Ping each zone every ``interval`` seconds until ``stop_event`` is set.

    Zones added, removed or redefined (by the CLI, API or UI in any process) are picked up
    within ``tick`` seconds; a zone is never checked twice at once.
    """
    pinger = ZonePinger(node, zones, timeout=timeout)
    running: dict[str, asyncio.Task[ZoneStatus]] = {}

    def finished(task: asyncio.Task[ZoneStatus]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("event=zone-check-failed error=%s", type(error).__name__)

    try:
        while not stop_event.is_set():
            for name in [n for n, t in running.items() if t.done()]:
                del running[name]
            try:
                due = await asyncio.to_thread(zones.due)
            except CertwayError as exc:
                log.error("event=zone-pinger-failed error=%s", exc)
                due = []
            except Exception as exc:  # keep pinging: the store may be busy for a moment
                log.error("event=zone-pinger-failed error=%s", type(exc).__name__)
                due = []
            for zone in due:
                if zone.name not in running:
                    task = asyncio.create_task(pinger.check(zone), name=f"zone-{zone.name}")
                    task.add_done_callback(finished)
                    running[zone.name] = task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), tick)
    finally:
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)
