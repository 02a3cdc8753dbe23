"""The ACME client: the node's server and domain certificates signed by an ACME CA (RFC 8555),
renewed before they expire.

The protocol (JWS, nonces, orders, polling, ARI) is the certbot project's ``acme`` and
``josepy`` libraries; this module holds the rules around them:

- **Account**: one per node; its key is sealed in the store like every private key.
- **The ACME server** is judged like every server certway connects to: right after each TLS
  handshake, before a request is sent, its certificate goes through the node's one validation
  path (``ValidationState.server_refusal`` of the ``acme`` service: the trusted CA list only,
  never a public bundle; the ``acme`` revocation policy with its fallback; the host name of
  the URL). OpenSSL only speaks TLS (the ``outbound`` TLS profile). A refused server gets
  nothing, and the error says why in the words of every other client ("the ACME server's
  certificate CN=… is refused: issuer CN=… is not in the trusted CA list"). The OCSP and CDP
  lookups of that check go through ``certway.fetch``, never through this client.
- **Signing** (``sign``): the slot's pending CSR is sent in a new order; each authorization is
  answered with HTTP-01 (``certway serve --acme-http-listen``) or TLS-ALPN-01 (the HTTPS admin
  listener, RFC 8737). The challenges travel through the store (``acme.challenges`` and the
  ``acme`` change topic), so a CLI run and a running server cooperate. The certificate is
  then *staged* as the slot's pending ACME certificate after the upload checks, and deployed
  (``deploy``) by the same upload the administrator uses: hot-reloaded, no restart.
- **Renewal** (``run_if_due``, called by the server's scheduler): once two thirds of the
  validity have passed, or earlier when the CA's renewal information (RFC 9773) says so, on
  the days and after the time of the schedule; a failure is retried with a growing back-off
  and raises alarms (``renewal_problems``). Time comes from the node's clock.

State is a few JSON settings (ADR 0006): ``acme.account``, ``acme.settings``,
``acme.managed`` (slots signed by ACME, with their CSR form for renewals), ``acme.pending``
(staged certificates), ``acme.renewal`` (attempts) and ``acme.challenges``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from acme import challenges, messages
from acme import errors as acme_errors
from acme.client import ClientNetwork, ClientV2
from asn1crypto.core import OctetString
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from josepy.errors import Error as JoseError
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from certway.clock import Clock
from certway.errors import CertwayError, Conflict, FetchError, NotFound, PolicyViolation
from certway.pki.checks import check_node_certificate
from certway.pki.csr import SubjectFields
from certway.pki.keys import PrivateKey, load_private_key
from certway.pki.load import load_certificates
from certway.pki.text import fingerprint, format_name
from certway.services.audit import Audit, audited
from certway.services.identities import CsrOptions, Identities, IdentityKind, normalise_domain
from certway.services.identities.model import slot_label
from certway.services.node_settings import NodeSettings
from certway.services.peer_validation import PeerValidation
from certway.services.tls_settings import TlsSettings
from certway.store.db import Store
from certway.store.repositories import KeyRepository, SettingsRepository, SlotRepository
from certway.store.topics import Topic, TopicRepository
from certway.tlsconf.presented import presented_chain

__all__ = [
    "ACME_SERVICE",
    "ALPN_PROTOCOL",
    "CHALLENGE_TYPES",
    "DAYS",
    "REVOCATION_REASONS",
    "AcmeAccountInfo",
    "AcmeClient",
    "AcmeSchedule",
    "NoAcmeAccount",
    "RenewalProblem",
    "challenge_certificate",
]

log = logging.getLogger("certway.acme")

ACME_SERVICE = "acme"
"""The revocation policy (``certway revocation set --service acme``) the ACME server's
certificate is judged with."""
ALPN_PROTOCOL = "acme-tls/1"
"""The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2)."""
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""id-pe-acmeIdentifier (RFC 8737 §6.1)."""

CHALLENGE_TYPES = ("http-01", "tls-alpn-01")
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
}
"""The reasons RFC 8555 §7.6 lets a subscriber give (RFC 5280 CRLReason codes)."""
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RENEW_FRACTION = 2 / 3
"""A certificate is renewed once this share of its validity has passed."""
FIRST_RETRY = dt.timedelta(hours=1)
LONGEST_RETRY = dt.timedelta(hours=24)
CLOSE_TO_EXPIRY = dt.timedelta(days=30)
ORDER_DEADLINE = dt.timedelta(seconds=120)
"""How long an order may take (validation and finalization), in real time."""

_ACCOUNT = "acme.account"
_SETTINGS = "acme.settings"
_MANAGED = "acme.managed"
_PENDING = "acme.pending"
_RENEWAL = "acme.renewal"
_CHALLENGES = "acme.challenges"


# -- TLS-ALPN-01: the challenge type and certificate (RFC 8737) ---------------------------------
# The acme library dropped TLS-ALPN-01 (certbot does not answer it); its generic
# key-authorization challenge classes give the rest (token, key authorization, response).
if "tls-alpn-01" not in challenges.Challenge.TYPES:

    @challenges.ChallengeResponse.register
    class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
        """The response to a TLS-ALPN-01 challenge (an empty object)."""

        typ = "tls-alpn-01"

    @challenges.Challenge.register
    class TLSALPN01(challenges.KeyAuthorizationChallenge):
        """TLS-ALPN-01: prove control of a name with a certificate served for ``acme-tls/1``."""

        response_cls = TLSALPN01Response
        typ = response_cls.typ

        def validation(self, account_key: JWK, **unused: Any) -> str:
            return self.key_authorization(account_key)


def challenge_certificate(
    domain: str, key_authorization: str, key: PrivateKey, *, at: dt.datetime
) -> x509.Certificate:
    """The self-signed certificate of RFC 8737 §3: the domain as its only SAN and the critical
    acmeIdentifier extension holding the SHA-256 of the key authorization."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - dt.timedelta(days=1))
        .not_valid_after(at + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, OctetString(digest).dump()),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


# -- HTTPS to the ACME server: judged by certway's one validation path --------------------------
class _Refused(FetchError):
    """The ACME server's certificate was refused (before anything was sent to it)."""


_Judge = Callable[[bytes | None, list[bytes], str], None]
"""Judges the certificate (DER) a server presented for a host, with the certificates it
presented after it (DER, untrusted intermediates); raises ``_Refused``."""


def _judged_pool(judge: _Judge) -> type[HTTPSConnectionPool]:
    """A ``urllib3`` HTTPS pool whose connections call ``judge`` right after each handshake
    and close before the request is sent when it refuses."""

    class JudgedConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sock = self.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
            try:
                judge(der, presented_chain(sock), self.host)
            except BaseException:
                self.close()
                raise
            self.is_verified = True  # by certway (judge), not by OpenSSL

    class JudgedPool(HTTPSConnectionPool):
        ConnectionCls = JudgedConnection

    return JudgedPool


class _JudgingAdapter(HTTPAdapter):
    """A ``requests`` adapter whose HTTPS connections speak TLS per ``context`` (a TLS
    profile, no verification by OpenSSL) and are judged by ``judge`` after each handshake: no
    certifi bundle, no environment override, no ``verify=`` of the caller."""

    def __init__(self, context: ssl.SSLContext, judge: _Judge) -> None:
        self._context = context
        self._pool = _judged_pool(judge)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "https": self._pool,
        }

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_NONE"  # certway judges the server: _judged_pool
        conn.assert_hostname = False
        conn.ca_certs = None
        conn.ca_cert_dir = None


def _problem_text(exc: BaseException) -> str:
    """One line about an ACME or network failure (never key material)."""
    if isinstance(exc, messages.Error):
        return exc.detail or exc.description or str(exc.typ)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake with the ACME server failed"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect to the ACME server"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the ACME server did not answer in time"
    if isinstance(exc, acme_errors.ValidationError):
        parts = []
        for authzr in exc.failed_authzrs:
            for chall in authzr.body.challenges:
                if chall.error is not None:
                    parts.append(
                        f"{authzr.body.identifier.value} ({chall.chall.typ}): "
                        f"{chall.error.detail or chall.error.description}"
                    )
        return "validation failed: " + ("; ".join(parts) or "no detail given")
    if isinstance(exc, acme_errors.TimeoutError):
        return "the order was not ready in time"
    return str(exc) or type(exc).__name__


@contextmanager
def _acme_errors(action: str) -> Iterator[None]:
    try:
        yield
    except _Refused as exc:
        raise FetchError(f"{action}: {exc}") from None
    except CertwayError:
        raise
    except (
        messages.Error,
        acme_errors.Error,
        requests.exceptions.RequestException,
        JoseError,
        ValueError,
    ) as exc:
        raise FetchError(f"{action}: {_problem_text(exc)}") from None


class NoAcmeAccount(NotFound):
    """There is no ACME account yet (the command line names the command that creates one)."""

    code = "not-found"


# -- values -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AcmeAccountInfo:
    directory: str
    email: str
    uri: str
    status: str
    created_at: dt.datetime
    key: str
    terms_of_service: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "email": self.email,
            "uri": self.uri,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "key": self.key,
            "terms_of_service": self.terms_of_service,
        }


@dataclass(frozen=True, slots=True)
class AcmeSchedule:
    """When renewals run: on ``days`` at or after ``time`` (UTC); ``auto_deploy`` puts a new
    certificate live at once (else it waits as the pending ACME certificate)."""

    days: tuple[str, ...] = DAYS
    time: str = "00:00"
    auto_deploy: bool = True
    enabled: bool = True

    def allows(self, at: dt.datetime) -> bool:
        hour, minute = (int(p) for p in self.time.split(":"))
        return DAYS[at.weekday()] in self.days and (at.hour, at.minute) >= (hour, minute)

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "time": self.time,
            "auto_deploy": self.auto_deploy,
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class RenewalProblem:
    """A slot whose renewal keeps failing."""

    slot: str  # "server" or "domain:<name>"
    label: str
    failures: int
    last_error: str
    next_attempt: dt.datetime | None
    not_after: dt.datetime | None


def _slot_key(kind: str, name: str) -> str:
    return "server" if kind == "server" else f"domain:{name}"


def _split_key(key: str) -> tuple[IdentityKind, str]:
    if key == "server":
        return "server", ""
    return "domain", key.removeprefix("domain:")


def _when(text: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class AcmeClient:
    """The node's ACME client (``node.acme``)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: Audit,
        identities: Identities,
        peers: PeerValidation,
        tls: TlsSettings,
        node: NodeSettings,
        *,
        challenge_settle: float = 1.5,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._identities = identities
        self._peers = peers
        self._tls = tls
        self._node = node
        self._settle = challenge_settle
        """Seconds between publishing a TLS-ALPN-01 certificate and asking for validation:
        the HTTPS listener picks it up at its next reload poll (0.5 s by default)."""
        self._lock = threading.Lock()  # one order at a time from this process
        self._tick = threading.Lock()  # one renewal run at a time
        self._alpn_cache: tuple[int, dict[str, tuple[x509.Certificate, PrivateKey]]] | None = None

    # -- settings helpers -------------------------------------------------------------------
    def _get(self, key: str) -> Any:
        with self._store.reading() as session:
            return SettingsRepository(session).get(key)

    def _dict(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        return dict(value) if isinstance(value, dict) else {}

    def _update(self, key: str, slot: str, value: dict[str, Any] | None) -> None:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            current = settings.get(key)
            data = dict(current) if isinstance(current, dict) else {}
            if value is None:
                data.pop(slot, None)
            else:
                data[slot] = value
            settings.set(key, data)

    # -- the network ------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        """TLS per the ``outbound`` profile; the server is judged by ``_judge``, not OpenSSL."""
        context = self._tls.profile("outbound").apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _judge(self, der: bytes | None, intermediates: list[bytes], host: str) -> None:
        """Refuse the ACME server at ``host`` unless its certificate passes the ``acme``
        service's validation, with the intermediates it presented (blocking: OCSP and CDP
        lookups may go to the network)."""
        refusal = self._peers.state(ACME_SERVICE).server_refusal(
            der,
            intermediates=intermediates,
            name=host,
            at=self._clock.now(),
            server="the ACME server",
        )
        if refusal is not None:
            log.warning("event=acme-server-refused host=%s reason=%r", host, refusal)
            raise _Refused(refusal)

    def _network(self, key: PrivateKey, uri: str | None = None) -> ClientNetwork:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PolicyViolation("acme-key", "the ACME account key is not an EC P-256 key")
        account = (
            messages.RegistrationResource(uri=uri, body=messages.Registration()) if uri else None
        )
        net = ClientNetwork(
            JWKEC(key=key),
            account=account,
            alg=ES256,
            user_agent="certway",
            timeout=30,
        )
        net.session.trust_env = False  # no REQUESTS_CA_BUNDLE, no .netrc
        adapter = _JudgingAdapter(self._context(), self._judge)
        net.session.mount("https://", adapter)
        net.session.mount("http://", adapter)
        return net

    @staticmethod
    def _check_directory_url(url: str) -> str:
        url = url.strip()
        if not url.startswith("https://") or len(url) > 2000 or any(c.isspace() for c in url):
            raise PolicyViolation(
                "acme-directory", f"'{url}' is not an https:// ACME directory URL"
            )
        return url

    def _account_row(self) -> dict[str, Any]:
        account = self._dict(_ACCOUNT)
        if not account:
            raise NoAcmeAccount("no ACME account: create one first")
        return account

    def _client(self) -> tuple[ClientV2, JWK, dict[str, Any]]:
        account = self._account_row()
        if account.get("status") != "valid":
            raise PolicyViolation(
                "acme-account", "the ACME account is deactivated: create a new one"
            )
        with self._store.reading() as session:
            key = KeyRepository(session, self._store.vault).get(account["key_id"])
        net = self._network(key, account["uri"])
        with _acme_errors(f"cannot read the ACME directory {account['directory']}"):
            directory = ClientV2.get_directory(account["directory"], net)
        assert net.key is not None
        return ClientV2(directory, net), net.key, account

    # -- account ----------------------------------------------------------------------------
    def account(self) -> AcmeAccountInfo | None:
        account = self._dict(_ACCOUNT)
        if not account:
            return None
        with self._store.reading() as session:
            key = KeyRepository(session, self._store.vault).description(account["key_id"])
        created = _when(account.get("created_at"))
        assert created is not None
        return AcmeAccountInfo(
            directory=account["directory"],
            email=account.get("email", ""),
            uri=account["uri"],
            status=account.get("status", "valid"),
            created_at=created,
            key=key,
            terms_of_service=account.get("terms_of_service"),
        )

    def create_account(self, directory: str, email: str, *, accept_terms: bool) -> AcmeAccountInfo:
        """Register a new account (key EC P-256, sealed in the store) with the ACME server."""
        with self._audit.action("acme.account.create", directory) as detail:
            url = self._check_directory_url(directory)
            email = email.strip()
            if not email or "@" not in email or any(c.isspace() or c in ",:" for c in email):
                raise PolicyViolation("acme-email", f"'{email}' is not an e-mail address")
            existing = self._dict(_ACCOUNT)
            if existing.get("status") == "valid":
                raise Conflict("an ACME account exists already: deactivate it first")
            key = ec.generate_private_key(ec.SECP256R1())
            net = self._network(key)
            with _acme_errors(f"cannot read the ACME directory {url}"):
                directory_obj = ClientV2.get_directory(url, net)
            terms = directory_obj.meta.terms_of_service
            if terms and not accept_terms:
                raise PolicyViolation(
                    "acme-terms",
                    f"the ACME server's terms of service ({terms}) must be accepted: accept "
                    "the terms of service to create the account",
                )
            client = ClientV2(directory_obj, net)
            with _acme_errors("the ACME server refused the new account"):
                regr = client.new_account(
                    messages.NewRegistration.from_data(
                        email=email, terms_of_service_agreed=bool(terms) or accept_terms
                    )
                )
            now = self._clock.now()
            with self._store.transaction() as session:
                key_id = KeyRepository(session, self._store.vault).put(key, now)
                SettingsRepository(session).set(
                    _ACCOUNT,
                    {
                        "directory": url,
                        "email": email,
                        "uri": regr.uri,
                        "status": "valid",
                        "created_at": now.isoformat(),
                        "key_id": key_id,
                        "terms_of_service": terms,
                    },
                )
                detail.update(directory=url, email=email, account=regr.uri)
        info = self.account()
        assert info is not None
        return info

    def refresh_account(self) -> AcmeAccountInfo:
        """The account as the ACME server sees it now (its status)."""
        client, _key, account = self._client()
        assert client.net.account is not None
        with _acme_errors("cannot read the ACME account"):
            regr = client.query_registration(client.net.account)
        status = regr.body.status or "valid"
        if status != account.get("status"):
            with self._store.transaction() as session:
                SettingsRepository(session).set(_ACCOUNT, {**account, "status": status})
        info = self.account()
        assert info is not None
        return info

    def deactivate_account(self) -> AcmeAccountInfo:
        with self._audit.action("acme.account.deactivate", "ACME account") as detail:
            client, _key, account = self._client()
            assert client.net.account is not None
            with _acme_errors("the ACME server refused to deactivate the account"):
                client.deactivate_registration(client.net.account)
            with self._store.transaction() as session:
                SettingsRepository(session).set(_ACCOUNT, {**account, "status": "deactivated"})
                detail.update(account=account["uri"])
        info = self.account()
        assert info is not None
        return info

    # -- schedule ---------------------------------------------------------------------------
    def schedule(self) -> AcmeSchedule:
        raw = self._dict(_SETTINGS)
        if not raw:
            return AcmeSchedule()
        return AcmeSchedule(
            days=tuple(raw.get("days") or DAYS),
            time=str(raw.get("time") or "00:00"),
            auto_deploy=bool(raw.get("auto_deploy", True)),
            enabled=bool(raw.get("enabled", True)),
        )

    @audited("acme.schedule", target=lambda **k: "ACME renewal schedule")
    def set_schedule(
        self,
        *,
        days: Sequence[str] | None = None,
        time_of_day: str | None = None,
        auto_deploy: bool | None = None,
        enabled: bool | None = None,
    ) -> AcmeSchedule:
        """Change when renewals run (days of the week, time of day UTC) and whether a renewed
        certificate is deployed at once."""
        current = self.schedule()
        chosen_days = current.days
        if days is not None:
            cleaned = [d.strip().lower()[:3] for d in days if d.strip()]
            unknown = [d for d in cleaned if d not in DAYS]
            if unknown or not cleaned:
                raise PolicyViolation(
                    "acme-days",
                    f"days must be some of {', '.join(DAYS)}"
                    + (f", not '{unknown[0]}'" if unknown else ""),
                )
            chosen_days = tuple(d for d in DAYS if d in cleaned)
        chosen_time = current.time
        if time_of_day is not None:
            try:
                parsed = dt.datetime.strptime(time_of_day.strip(), "%H:%M")
            except ValueError:
                raise PolicyViolation(
                    "acme-time", f"'{time_of_day}' is not a time of day HH:MM (UTC)"
                ) from None
            chosen_time = f"{parsed:%H:%M}"
        schedule = AcmeSchedule(
            chosen_days,
            chosen_time,
            current.auto_deploy if auto_deploy is None else auto_deploy,
            current.enabled if enabled is None else enabled,
        )
        with self._store.transaction() as session:
            SettingsRepository(session).set(_SETTINGS, schedule.as_dict())
            TopicRepository(session).bump(Topic.ACME)
            self._audit.note(**schedule.as_dict())
        return schedule

    # -- challenges (read by the listeners) -------------------------------------------------
    def http_challenge(self, token: str) -> str | None:
        """The key authorization to answer ``/.well-known/acme-challenge/<token>`` with."""
        published = self._dict(_CHALLENGES).get("http-01")
        if not isinstance(published, dict):
            return None
        value = published.get(token)
        return value if isinstance(value, str) else None

    def alpn_challenge(self, server_name: str | None) -> tuple[x509.Certificate, PrivateKey] | None:
        """The TLS-ALPN-01 certificate and key to present for ``server_name``, if any."""
        if not server_name:
            return None
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            (version,) = TopicRepository(session).versions((Topic.ACME,))
            cached = self._alpn_cache
            if cached is not None and cached[0] == version:
                return cached[1].get(normalise_domain(server_name))
            raw = settings.get(_CHALLENGES)
        published = raw.get("tls-alpn-01") if isinstance(raw, dict) else None
        found: dict[str, tuple[x509.Certificate, PrivateKey]] = {}
        if isinstance(published, dict):
            for domain, entry in published.items():
                cert = x509.load_pem_x509_certificate(entry["cert"].encode())
                key_pem = self._store.vault.open(
                    base64.b64decode(entry["key"]), f"acme-challenge:{domain}".encode()
                )
                found[domain] = (cert, load_private_key(key_pem, None))
        self._alpn_cache = (version, found)
        return found.get(normalise_domain(server_name))

    def _publish(self, http: dict[str, str], alpn: dict[str, dict[str, str]]) -> None:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_CHALLENGES, {"http-01": http, "tls-alpn-01": alpn})
            TopicRepository(session).bump(Topic.ACME)

    # -- signing ----------------------------------------------------------------------------
    def _slot_csr(self, kind: IdentityKind, name: str) -> tuple[bytes, str, str | None]:
        """The slot's pending CSR (PEM), its key id and its CSR form (JSON)."""
        pending = self._identities.pending_csr(kind, name)
        if pending is None:
            raise PolicyViolation(
                "acme-no-csr",
                f"no CSR is pending for the {slot_label(kind, name)}: generate one first",
            )
        with self._store.reading() as session:
            slot = SlotRepository(session).get(kind, name)
            assert slot is not None and slot.pending_key_id is not None
            return pending.pem.encode(), slot.pending_key_id, slot.pending_form

    def _renewal_csr(self, kind: IdentityKind, name: str) -> None:
        """A new pending CSR (new key) with the form of the last ACME order of the slot."""
        managed = self._dict(_MANAGED).get(_slot_key(kind, name)) or {}
        form = managed.get("form") or {}
        subject_der = managed.get("subject")
        extra: tuple[x509.NameAttribute[str], ...] = ()
        if isinstance(subject_der, str):
            subject = x509.Name.from_rfc4514_string(subject_der)
            extra = tuple(
                a  # type: ignore[misc]
                for a in subject
                if a.oid != NameOID.COMMON_NAME and isinstance(a.value, str)
            )
        options = CsrOptions(
            cn=form.get("cn", "node"),
            alt_names=form.get("alt_names", "none"),
            add_san=tuple(form.get("add_san", ())),
            ucm_domains=tuple(form.get("ucm_domains", ())),
            ucm_domain_format=form.get("ucm_domain_format", "dns"),
            xmpp_domains=tuple(form.get("xmpp_domains", ())),
            chat_aliases=tuple(form.get("chat_aliases", ())),
            phone_security_profiles=tuple(form.get("phone_security_profiles", ())),
            key_type=form.get("key_type", "rsa:4096"),
            digest=form.get("digest", "sha256"),
            subject=SubjectFields(extra=extra),
        )
        self._identities.generate_csr(kind, name, options)

    def _slot_name(self, kind: str, name: str) -> tuple[IdentityKind, str]:
        if kind not in ("server", "domain"):
            raise PolicyViolation(
                "acme-kind", "the ACME client signs the server certificate or a domain's"
            )
        if kind == "server":
            return "server", ""
        domain = normalise_domain(name)
        self._identities.domain(domain)  # NotFound when it was never added
        return "domain", domain

    def sign(
        self, kind: str = "server", name: str = "", *, challenge: str = "http-01"
    ) -> dict[str, Any]:
        """Have the slot's pending CSR signed by the ACME CA; the certificate is staged as the
        pending ACME certificate (deployed at once when the schedule says ``auto_deploy``)."""
        slot_kind, slot_name = self._slot_name(kind, name)
        if challenge not in CHALLENGE_TYPES:
            raise PolicyViolation(
                "acme-challenge", f"the challenge must be one of {', '.join(CHALLENGE_TYPES)}"
            )
        with self._audit.action("acme.sign", slot_label(slot_kind, slot_name)) as detail:
            result = self._sign(slot_kind, slot_name, challenge)
            detail.update(
                challenge=challenge,
                subject=result["subject"],
                sha256_fingerprint=result["fingerprint"],
                serial=result["serial"],
            )
        if self.schedule().auto_deploy:
            self.deploy(slot_kind, slot_name)
            result["deployed"] = True
        return result

    def _sign(self, kind: IdentityKind, name: str, challenge: str) -> dict[str, Any]:
        csr_pem, key_id, form = self._slot_csr(kind, name)
        client, jwk, _account = self._client()
        with self._lock:
            with _acme_errors("the ACME server refused the order"):
                order = client.new_order(csr_pem)
            http: dict[str, str] = {}
            alpn: dict[str, dict[str, str]] = {}
            answers: list[tuple[messages.ChallengeBody, challenges.ChallengeResponse]] = []
            now = self._clock.now()
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                identifier = authz.body.identifier.value
                body = next((c for c in authz.body.challenges if c.chall.typ == challenge), None)
                if body is None:
                    offered = ", ".join(c.chall.typ for c in authz.body.challenges)
                    raise PolicyViolation(
                        "acme-challenge",
                        f"the ACME server offers no {challenge} challenge for {identifier} "
                        f"(offered: {offered or 'none'})",
                    )
                response, validation = body.response_and_validation(jwk)
                if challenge == "http-01":
                    http[body.chall.encode("token")] = validation
                else:
                    key = ec.generate_private_key(ec.SECP256R1())
                    cert = challenge_certificate(identifier, validation, key, at=now)
                    key_pem = key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                    sealed = self._store.vault.seal(
                        key_pem, f"acme-challenge:{normalise_domain(identifier)}".encode()
                    )
                    alpn[normalise_domain(identifier)] = {
                        "cert": _pem([cert]),
                        "key": base64.b64encode(sealed).decode(),
                    }
                answers.append((body, response))
            try:
                if answers:
                    self._publish(http, alpn)
                    if alpn:
                        time.sleep(self._settle)
                with _acme_errors("the ACME server did not issue the certificate"):
                    for body, response in answers:
                        client.answer_challenge(body, response)
                    deadline = dt.datetime.now() + ORDER_DEADLINE
                    order = client.poll_and_finalize(order, deadline)
            finally:
                if answers:
                    self._publish({}, {})
        return self._stage(kind, name, order.fullchain_pem, key_id, form, csr_pem, challenge)

    def _stage(
        self,
        kind: IdentityKind,
        name: str,
        fullchain: str,
        key_id: str,
        form: str | None,
        csr_pem: bytes,
        challenge: str,
    ) -> dict[str, Any]:
        """Check the certificate like an upload, then keep it as the pending ACME certificate."""
        certs = load_certificates(fullchain.encode())
        leaf = certs[0]
        with self._store.reading() as session:
            key = KeyRepository(session, self._store.vault).get(key_id)
        now = self._clock.now()
        # The checks of an upload of this slot (deploying repeats them, at its own time).
        findings = check_node_certificate(
            leaf,
            key,
            at=max(now, leaf.not_valid_before_utc),
            require_client_auth=self._node.mutual_tls_in_use(),
        )
        csr = x509.load_pem_x509_csr(csr_pem)
        slot = _slot_key(kind, name)
        staged = {
            "kind": kind,
            "name": name,
            "pem": fullchain,
            "key_id": key_id,
            "warnings": [f.message for f in findings],
            "obtained_at": now.isoformat(),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "subject": format_name(leaf.subject),
        }
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            pending = settings.get(_PENDING)
            pending = dict(pending) if isinstance(pending, dict) else {}
            pending[slot] = staged
            settings.set(_PENDING, pending)
            managed = settings.get(_MANAGED)
            managed = dict(managed) if isinstance(managed, dict) else {}
            managed[slot] = {
                "kind": kind,
                "name": name,
                "form": json.loads(form) if form else {},
                "subject": csr.subject.rfc4514_string(),
                "challenge": challenge,
            }
            settings.set(_MANAGED, managed)
        return {
            "slot": slot,
            "subject": format_name(leaf.subject),
            "issuer": format_name(leaf.issuer),
            "serial": format(leaf.serial_number, "X"),
            "fingerprint": fingerprint(leaf),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "warnings": staged["warnings"],
            "deployed": False,
        }

    # -- the pending ACME certificate -------------------------------------------------------
    def pending(self) -> dict[str, dict[str, Any]]:
        """The staged certificates by slot (no key material: the key stays sealed)."""
        return {
            slot: {k: v for k, v in entry.items() if k != "key_id"}
            for slot, entry in self._dict(_PENDING).items()
        }

    def deploy(self, kind: str = "server", name: str = "") -> dict[str, Any]:
        """Make the pending ACME certificate of the slot live (checked again, as an upload;
        running listeners reload it, no restart)."""
        slot_kind, slot_name = self._slot_name(kind, name)
        slot = _slot_key(slot_kind, slot_name)
        with self._audit.action("acme.deploy", slot_label(slot_kind, slot_name)) as detail:
            staged = self._dict(_PENDING).get(slot)
            if not staged:
                raise NotFound(f"no pending ACME certificate for the {slot_label(kind, name)}")
            result = self._identities.upload(
                slot_kind, slot_name, staged["pem"].encode(), source="acme"
            )
            self._update(_PENDING, slot, None)
            detail.update(version=result.info.version, subject=result.info.subject)
        return {"slot": slot, "version": result.info.version, "warnings": result.warnings}

    # -- renewal ----------------------------------------------------------------------------
    def managed(self) -> dict[str, dict[str, Any]]:
        return self._dict(_MANAGED)

    def renewal_due(self, kind: IdentityKind, name: str) -> dt.datetime | None:
        """When the slot's certificate is due for renewal (two thirds of its validity, or
        the start of the CA's suggested window when earlier); None without a certificate."""
        active = self._identities.active(kind, name)
        if active is None:
            return None
        cert = active.certificate
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        due = start + (end - start) * RENEW_FRACTION
        ari = _when(self._dict(_RENEWAL).get(_slot_key(kind, name), {}).get("ari_time"))
        return min(due, ari) if ari is not None else due

    def _check_ari(self, kind: IdentityKind, name: str, now: dt.datetime) -> None:
        """Ask the CA for renewal information (RFC 9773) when it publishes it and the last
        answer's Retry-After has passed."""
        slot = _slot_key(kind, name)
        state = self._dict(_RENEWAL).get(slot, {})
        next_check = _when(state.get("ari_next"))
        if next_check is not None and now < next_check:
            return
        active = self._identities.active(kind, name)
        if active is None:
            return
        try:
            client, _jwk, _account = self._client()
            try:
                client.directory["renewalInfo"]
            except KeyError:  # the CA publishes no renewal information
                self._update(
                    _RENEWAL, slot, {**state, "ari_next": (now + LONGEST_RETRY).isoformat()}
                )
                return
            pem = active.certificate.public_bytes(serialization.Encoding.PEM)
            when, retry_after = client.renewal_time(pem)
        except (CertwayError, acme_errors.Error, requests.exceptions.RequestException) as exc:
            log.warning("event=acme-ari-failed slot=%s error=%r", slot, _problem_text(exc))
            return
        wait = max(dt.timedelta(hours=1), retry_after - dt.datetime.now())
        update = {**state, "ari_next": (now + wait).isoformat()}
        if when is not None:
            update["ari_time"] = when.astimezone(dt.UTC).isoformat()
        self._update(_RENEWAL, slot, update)

    def run_if_due(self) -> list[str]:
        """The scheduler's tick: renew every ACME-managed slot that is due, allowed by the
        schedule and past its back-off. Returns the slots renewed."""
        if not self._tick.acquire(blocking=False):
            return []  # a tick is already under way
        try:
            return self._run_if_due()
        finally:
            self._tick.release()

    def _run_if_due(self) -> list[str]:
        schedule = self.schedule()
        account = self._dict(_ACCOUNT)
        if not schedule.enabled or account.get("status") != "valid":
            return []
        renewed = []
        now = self._clock.now()
        for slot in list(self.managed()):
            kind, name = _split_key(slot)
            if slot in self._dict(_PENDING) and not schedule.auto_deploy:
                continue  # waiting for the administrator to deploy it
            self._check_ari(kind, name, now)
            due = self.renewal_due(kind, name)
            state = self._dict(_RENEWAL).get(slot, {})
            retry = _when(state.get("next_attempt"))
            if due is None or now < due or not schedule.allows(now):
                continue
            if retry is not None and now < retry:
                continue
            try:
                self._renew(kind, name, "scheduled")
            except CertwayError:
                continue  # recorded (alarm); retried after the back-off
            renewed.append(slot)
        return renewed

    def renew_now(self, kind: str = "server", name: str = "") -> dict[str, Any]:
        """Renew the slot's certificate now, whatever the schedule."""
        slot_kind, slot_name = self._slot_name(kind, name)
        if _slot_key(slot_kind, slot_name) not in self.managed():
            raise PolicyViolation(
                "acme-not-managed",
                f"the {slot_label(slot_kind, slot_name)} was never signed by the ACME CA: "
                "have it signed first",
            )
        return self._renew(slot_kind, slot_name, "manual")

    def _renew(self, kind: IdentityKind, name: str, why: str) -> dict[str, Any]:
        slot = _slot_key(kind, name)
        managed = self.managed().get(slot, {})
        now = self._clock.now()
        state = self._dict(_RENEWAL).get(slot, {})
        try:
            with self._audit.action("acme.renew", slot_label(kind, name)) as detail:
                detail.update(trigger=why)
                if self._identities.pending_csr(kind, name) is None:
                    self._renewal_csr(kind, name)
                result = self.sign(kind, name, challenge=managed.get("challenge", "http-01"))
        except CertwayError as exc:
            failures = int(state.get("failures") or 0) + 1
            wait = min(FIRST_RETRY * 2 ** (failures - 1), LONGEST_RETRY)
            self._update(
                _RENEWAL,
                slot,
                {
                    **state,
                    "failures": failures,
                    "last_error": str(exc),
                    "last_attempt": now.isoformat(),
                    "next_attempt": (now + wait).isoformat(),
                },
            )
            log.warning(
                "event=acme-renewal-failed slot=%s failures=%d error=%r", slot, failures, str(exc)
            )
            raise
        self._update(
            _RENEWAL,
            slot,
            {
                "failures": 0,
                "last_attempt": now.isoformat(),
                "last_success": now.isoformat(),
                "ari_next": state.get("ari_next"),
            },
        )
        log.info("event=acme-renewed slot=%s trigger=%s", slot, why)
        return result

    def renewal_problems(self) -> list[RenewalProblem]:
        """Slots whose last renewal failed (for the alarms)."""
        problems = []
        for slot, state in self._dict(_RENEWAL).items():
            failures = int(state.get("failures") or 0)
            if failures <= 0:
                continue
            kind, name = _split_key(slot)
            active = self._identities.active(kind, name)
            problems.append(
                RenewalProblem(
                    slot,
                    slot_label(kind, name),
                    failures,
                    str(state.get("last_error") or ""),
                    _when(state.get("next_attempt")),
                    active.certificate.not_valid_after_utc if active is not None else None,
                )
            )
        return problems

    # -- revocation -------------------------------------------------------------------------
    def revoke(
        self, kind: str = "server", name: str = "", *, reason: str = "unspecified"
    ) -> dict[str, Any]:
        """Revoke the slot's live certificate at the ACME CA (signed with the account key)."""
        slot_kind, slot_name = self._slot_name(kind, name)
        code = REVOCATION_REASONS.get(reason)
        if code is None:
            raise PolicyViolation(
                "acme-reason", f"the reason must be one of {', '.join(REVOCATION_REASONS)}"
            )
        with self._audit.action("acme.revoke", slot_label(slot_kind, slot_name)) as detail:
            active = self._identities.active(slot_kind, slot_name)
            if active is None:
                raise NotFound(f"the {slot_label(slot_kind, slot_name)} has no certificate")
            client, _jwk, _account = self._client()
            with _acme_errors("the ACME server refused the revocation"):
                client.revoke(active.certificate, code)
            serial = format(active.certificate.serial_number, "X")
            with self._store.transaction() as session:
                settings = SettingsRepository(session)
                revoked = settings.get("acme.revoked")
                revoked = list(revoked) if isinstance(revoked, list) else []
                revoked.append({"slot": _slot_key(slot_kind, slot_name), "serial": serial})
                settings.set("acme.revoked", revoked[-100:])
            detail.update(serial=serial, reason=reason)
        return {"slot": _slot_key(slot_kind, slot_name), "serial": serial, "reason": reason}

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        account = self.account()
        renewal = self._dict(_RENEWAL)
        pending = self.pending()
        slots = []
        for slot, entry in self.managed().items():
            kind, name = _split_key(slot)
            active = self._identities.active(kind, name)
            due = self.renewal_due(kind, name)
            state = renewal.get(slot, {})
            slots.append(
                {
                    "slot": slot,
                    "challenge": entry.get("challenge", "http-01"),
                    "subject": format_name(active.certificate.subject) if active else None,
                    "not_after": active.certificate.not_valid_after_utc.isoformat()
                    if active
                    else None,
                    "renewal_due": due.isoformat() if due else None,
                    "renewal_info": state.get("ari_time"),
                    "failures": int(state.get("failures") or 0),
                    "last_error": state.get("last_error"),
                    "last_attempt": state.get("last_attempt"),
                    "last_success": state.get("last_success"),
                    "next_attempt": state.get("next_attempt"),
                    "pending": slot in pending,
                }
            )
        return {
            "account": account.as_dict() if account else None,
            "schedule": self.schedule().as_dict(),
            "certificates": slots,
            "pending": [
                {
                    "slot": slot,
                    "subject": p.get("subject"),
                    "not_after": p.get("not_after"),
                    "obtained_at": p.get("obtained_at"),
                    "warnings": p.get("warnings", []),
                }
                for slot, p in pending.items()
            ],
        }
