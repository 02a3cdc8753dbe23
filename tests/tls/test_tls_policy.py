"""The TLS profiles on real handshakes (Python's ssl on both ends, 127.0.0.1): what each
profile accepts and refuses as a server and as a client, and the logged fallback when the
key exchange groups cannot be set."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

import certway.tlsconf.policy as policy_module
from certway.errors import PolicyViolation
from certway.tlsconf.policy import (
    INTERMEDIATE,
    MODERN,
    PROFILES,
    TLS_SERVICES,
    TlsPolicy,
    TlsProfile,
    profile_named,
)

from conftest import key_pem, test_key, write

NAME = "tls.example.com"


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A self-signed P-256 server certificate: files and PEM."""
    key = test_key("ec:p256", 800)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    folder = tmp_path_factory.mktemp("tls-policy")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return write(folder / "cert.pem", pem), write(folder / "key.pem", key_pem(key)), pem


def server_context(
    identity: tuple[Path, Path, bytes], profile: TlsProfile | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if profile is not None:
        profile.apply(context)
    context.load_cert_chain(identity[0], identity[1])
    return context


def client_context(
    identity: tuple[Path, Path, bytes], profile: TlsProfile | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if profile is not None:
        profile.apply(context)
    context.load_verify_locations(cadata=identity[2].decode())
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, str] | None:
    """(version, cipher) both ends agreed on, or None when the handshake failed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def accept() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=NAME) as tls,
            ):
                cipher = tls.cipher()
                assert cipher is not None
                return cipher[1], cipher[0]
        except (ssl.SSLError, ConnectionError):
            return None
        finally:
            thread.join(10)


def test_intermediate_refuses_cbc_suites(identity: tuple[Path, Path, bytes]) -> None:
    client = client_context(identity, None)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA")
    assert handshake(server_context(identity, INTERMEDIATE), client) is None
    # the same client is served without the profile: the refusal is the profile's
    assert handshake(server_context(identity, None), client) is not None


def test_intermediate_serves_tls12_with_aead_and_tls13(identity: tuple[Path, Path, bytes]) -> None:
    server = server_context(identity, INTERMEDIATE)
    tls12 = client_context(identity, None)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(server, tls12) or ("", "")
    assert version == "TLSv1.2"
    assert cipher in INTERMEDIATE.tls12_ciphers
    assert handshake(server, client_context(identity, None)) == (
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
    )


# In TLS 1.3 the client's groups are about key exchange only (in TLS 1.2 they also limit the
# curve of the server's ECDSA certificate, here P-256).
@pytest.mark.parametrize("curve", ["X25519", "prime256v1", "secp384r1"])
def test_allowed_groups(identity: tuple[Path, Path, bytes], curve: str) -> None:
    client = client_context(identity, None)
    client.set_ecdh_curve(curve)
    assert handshake(server_context(identity, INTERMEDIATE), client) is not None


@pytest.mark.parametrize("curve", ["X448", "secp521r1"])
def test_other_groups_are_refused(identity: tuple[Path, Path, bytes], curve: str) -> None:
    client = client_context(identity, None)
    client.set_ecdh_curve(curve)
    assert handshake(server_context(identity, INTERMEDIATE), client) is None
    # the same client is served without the profile: the refusal is the profile's
    assert handshake(server_context(identity, None), client) is not None


def test_modern_is_tls13_only(identity: tuple[Path, Path, bytes]) -> None:
    server = server_context(identity, MODERN)
    tls12 = client_context(identity, None)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(server, tls12) is None
    assert handshake(server, client_context(identity, None)) is not None


def test_profiles_hold_for_clients_too(identity: tuple[Path, Path, bytes]) -> None:
    cbc_only = server_context(identity, None)
    cbc_only.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc_only.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    assert handshake(cbc_only, client_context(identity, INTERMEDIATE)) is None
    tls12_only = server_context(identity, None)
    tls12_only.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(tls12_only, client_context(identity, INTERMEDIATE)) is not None
    assert handshake(tls12_only, client_context(identity, MODERN)) is None


def test_groups_fallback_is_logged_and_stays_within_the_profile(
    identity: tuple[Path, Path, bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(policy_module, "set_groups", lambda context, groups: False)
    monkeypatch.setattr(policy_module, "_fallback_logged", False)
    caplog.set_level(logging.WARNING, logger="certway.tls")
    server = server_context(identity, INTERMEDIATE)
    server_context(identity, INTERMEDIATE)
    warnings = [r.getMessage() for r in caplog.records if "tls-groups-fallback" in r.getMessage()]
    assert len(warnings) == 1  # once, not per context
    assert "P-256 only" in warnings[0]
    p384 = client_context(identity, None)
    p384.set_ecdh_curve("secp384r1")
    assert handshake(server, p384) is None
    p256 = client_context(identity, None)
    p256.set_ecdh_curve("prime256v1")
    assert handshake(server, p256) is not None


def test_profiles_share_what_a_listening_context_cannot_change() -> None:
    """A running listener switches profile by its protocol versions only (``apply_versions``):
    every profile must have the same TLS 1.2 suites and groups."""
    assert len({(p.tls12_ciphers, p.groups) for p in PROFILES.values()}) == 1


def test_profile_names_and_services_are_checked() -> None:
    assert profile_named("Modern") is MODERN
    with pytest.raises(
        PolicyViolation, match="TLS profile must be intermediate or modern, not 'old'"
    ):
        profile_named("old")
    with pytest.raises(PolicyViolation, match="unknown TLS service 'sip'"):
        TlsPolicy().with_profile("sip", "modern")
    policy = TlsPolicy().with_profile("zones", "modern")
    assert policy.profile("zones") is MODERN
    assert all(policy.profile(s) is INTERMEDIATE for s in TLS_SERVICES if s != "zones")
    assert policy.as_dict()["zones"] == {
        "profile": "modern",
        "versions": ["TLSv1.3"],
        "tls12_ciphers": [],
        "groups": ["X25519", "P-256", "P-384"],
    }
