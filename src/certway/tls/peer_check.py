"""One peer's mutual-TLS health check: call the peer's ``/api/v1/cluster/health`` presenting
this node's server certificate as the client certificate, judge the certificate the peer
presents (``ClusterTls.judge``: the node's one validation path, as a server certificate for
the peer's FQDN, through the intermediates the peer presented) and read whether the peer
accepted ours.

OpenSSL checks nothing itself here (as for SIP zones): certway judges the peer after the
handshake, so the result says why a certificate failed.
"""

from __future__ import annotations

import ssl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.services.cluster_tls import PeerTlsResult
from certway.services.node import Node
from certway.services.peer_validation import presented_certificates
from certway.tls.contexts import load_identity
from certway.tlsconf.presented import presented_chain

__all__ = ["HEALTH_PATH", "check_peer"]

HEALTH_PATH = "/api/v1/cluster/health"


def _context(node: Node) -> ssl.SSLContext:
    context = node.tls.profile("admin-https").apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # judged by certway below, with a reason
    identity = node.identities.active("server")
    if identity is not None:
        load_identity(
            context,
            [identity.certificate, *identity.chain],
            node.identities.private_key(identity),
        )
    return context


def check_peer(node: Node, fqdn: str, address: str, *, timeout: float = 5.0) -> PeerTlsResult:
    """Check the peer ``fqdn`` listening (admin listener) at ``address`` (``HOST:PORT``)."""
    now = node.clock.now()
    try:
        with httpx.Client(verify=_context(node), timeout=timeout) as client:
            response = client.get(f"https://{address}{HEALTH_PATH}")
            stream = response.extensions.get("network_stream")
            tls = stream.get_extra_info("ssl_object") if stream is not None else None
            der = tls.getpeercert(True) if tls is not None else None
            presented = presented_certificates(presented_chain(tls))
    except httpx.HTTPError as exc:
        return PeerTlsResult(fqdn, address, False, f"cannot reach the peer: {exc}", now, True)
    # the peer's certificate, then the ones it presented after it (intermediates only)
    pem = (
        b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (x509.load_der_x509_certificate(der), *presented)
        )
        if der
        else None
    )
    judgement = node.cluster_tls.judge(pem, as_server_for=fqdn)
    if response.status_code != 200:
        detail = _detail(response)
        return PeerTlsResult(
            fqdn,
            address,
            judgement.valid,
            f"the peer refused this node's certificate: {detail}"
            if judgement.valid
            else f"{judgement.reason}; the peer refused this node's certificate: {detail}",
            now,
            True,
        )
    return PeerTlsResult(fqdn, address, judgement.valid, judgement.reason, now)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.status_code))
    except ValueError:
        return f"HTTP {response.status_code}"
