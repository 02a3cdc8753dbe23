"""The ACME server (RFC 8555) of the local CAs: ``certway ca acme enable --ca NAME``.

One ``AcmeServer`` per node answers for every CA whose ACME service is enabled; the web
layer (certway.web.acme) hands it each request under ``/acme/<CA>/`` as bytes and sends back
what it answers. JWS parsing and checking is josepy's and the ``acme`` package's (the
certbot project's); nothing of JOSE is written here.

What is kept where:

- the settings of a CA's ACME service: a JSON setting ``acme-server.<CA id>``, read on each
  request (a change made by the CLI applies to the next request of a running server);
- accounts and external account binding keys (HMAC sealed by the vault): the store;
- orders, authorizations, challenges, nonces: memory. They are short-lived (an order has a
  deadline, ``order_minutes``); a restart drops the pending ones, as a lost nonce would;
- issued certificates: the CA's inventory, with the ordering account, through the same
  ``LocalCA`` signing path and profile checks as ``certway ca sign``. Revocation by ACME is
  ``LocalCA.revoke``: the same record, CRL and OCSP answer as ``certway ca revoke``.

Challenges are checked on the server's validation threads (``acme_validation``), never on
the caller's thread and never on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy import b64
from josepy.errors import DeserializationError
from josepy.jwk import JWK, JWKEC, JWKRSA, JWKOct

from certway.adminregex import compile_admin_regex
from certway.clock import Clock
from certway.errors import CertwayError, Conflict, DecodeError, NotFound, PolicyViolation
from certway.pki.csr import check_csr
from certway.pki.issue import check_days
from certway.pki.names import check_dns_name
from certway.pki.text import parse_serial, serial_hex
from certway.services.acme_validation import AcmeProblem, Resolver, Target, validate
from certway.services.audit import Actor, Audit, acting_as, audited
from certway.services.local_ca import LocalCA
from certway.store.acme import AcmeRepository
from certway.store.db import Store
from certway.store.repositories import CaRepository, SettingsRepository
from certway.store.schema import AcmeAccountRow
from certway.store.topics import Topic, TopicRepository

__all__ = [
    "ACME_PROFILES",
    "CHALLENGE_TYPES",
    "AcmeAccountInfo",
    "AcmeProblem",
    "AcmeReply",
    "AcmeRequest",
    "AcmeServer",
    "AcmeServiceInfo",
    "AcmeSettings",
    "EabKey",
]

log = logging.getLogger("certway.acme")

CHALLENGE_TYPES = ("http-01", "tls-alpn-01", "dns-01")
ACME_PROFILES = ("server", "server-client")
"""The certificate profiles ACME may issue with (TLS servers)."""
_ACCOUNT_ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512"),
)
_EAB_ALGORITHMS = ("HS256", "HS384", "HS512")
_REVOCATION_REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
}
_MAX_NONCES = 100_000
_MAX_IDENTIFIERS = 100
_VALIDATION_TIMEOUT = 10.0
_SETTINGS_TTL = 1.0
"""Seconds a CA's ACME settings are kept in memory (a change applies within that time)."""
_ANSWER_WAIT = 0.25
"""How long a challenge request waits for its validation before answering "processing"."""


def _setting_key(ca_id: int) -> str:
    return f"acme-server.{ca_id}"


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    """How a CA's ACME service issues (see ``certway ca acme enable --help``)."""

    enabled: bool = True
    challenges: tuple[str, ...] = CHALLENGE_TYPES
    allow: str = r".*"
    allow_ip: bool = False
    days: int = 90
    profile: str = "server"
    eab: bool = False
    dns_server: str | None = None
    http01_port: int = 80
    tls_alpn01_port: int = 443
    order_minutes: int = 60
    orders_per_hour: int = 300

    def check(self) -> None:
        if not self.challenges:
            raise PolicyViolation("acme-challenges", "give at least one challenge type")
        for kind in self.challenges:
            if kind not in CHALLENGE_TYPES:
                raise PolicyViolation(
                    "acme-challenges",
                    f"unknown challenge type '{kind}'; choose from {', '.join(CHALLENGE_TYPES)}",
                )
        compile_admin_regex(self.allow, code="acme-allow")
        check_days(self.days)
        if self.profile not in ACME_PROFILES:
            raise PolicyViolation("profile", "the ACME profile is 'server' or 'server-client'")
        for what, port in (
            ("the HTTP-01 port", self.http01_port),
            ("the TLS-ALPN-01 port", self.tls_alpn01_port),
        ):
            if not 1 <= port <= 65535:
                raise PolicyViolation("port", f"{what} must be between 1 and 65535")
        if self.dns_server is not None:
            host, sep, dns_port = self.dns_server.rpartition(":")
            if not sep or not host or not dns_port.isdigit() or not 1 <= int(dns_port) <= 65535:
                raise PolicyViolation(
                    "dns-server", f"the DNS server '{self.dns_server}' is not HOST:PORT"
                )
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                raise PolicyViolation(
                    "dns-server", f"the DNS server needs an IP address, not '{host}'"
                ) from None
        if not 1 <= self.order_minutes <= 7 * 24 * 60:
            raise PolicyViolation("order-minutes", "the order lifetime must be 1 to 10080 minutes")
        if not 1 <= self.orders_per_hour <= 1_000_000:
            raise PolicyViolation("rate-limit", "the orders per hour must be 1 to 1000000")

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["challenges"] = list(self.challenges)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AcmeSettings:
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        known["challenges"] = tuple(known.get("challenges", CHALLENGE_TYPES))
        return cls(**known)


@dataclass(frozen=True, slots=True)
class AcmeAccountInfo:
    id: int
    status: str
    contact: tuple[str, ...]
    thumbprint: str
    eab_key_id: str | None
    created_at: dt.datetime
    issued: int


@dataclass(frozen=True, slots=True)
class EabKey:
    key_id: str
    created_at: dt.datetime
    account: int | None


@dataclass(frozen=True, slots=True)
class AcmeServiceInfo:
    ca: str
    directory_path: str
    settings: AcmeSettings
    accounts: tuple[AcmeAccountInfo, ...]
    eab_keys: tuple[EabKey, ...]


@dataclass(frozen=True, slots=True)
class AcmeRequest:
    """One HTTP request under ``/acme/<ca>/``: ``path`` is what follows that prefix,
    ``base`` the URL of the prefix (``https://host:port/acme/<ca>``)."""

    ca: str
    method: str
    path: str
    base: str
    content_type: str | None
    body: bytes
    address: str | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/{self.path}"


@dataclass(slots=True)
class AcmeReply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


# -- in-memory state ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Challenge:
    id: str
    type: str
    token: str
    status: str = "pending"
    validated: dt.datetime | None = None
    error: dict[str, object] | None = None


@dataclass(slots=True)
class _Authz:
    id: str
    order_id: str
    identifier: dict[str, str]
    expires: dt.datetime
    challenges: list[_Challenge]
    status: str = "pending"


@dataclass(slots=True)
class _Order:
    id: str
    ca_id: int
    account_id: int
    identifiers: list[dict[str, str]]
    expires: dt.datetime
    authz_ids: list[str]
    status: str = "pending"
    error: dict[str, object] | None = None
    certificate: str | None = None  # serial


@dataclass(frozen=True, slots=True)
class _Verified:
    """A checked JWS: its payload, and the account (kid) or key (jwk) that signed it."""

    payload: bytes
    account: AcmeAccountRow | None
    jwk: JWK | None
    protected: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Ca:
    id: int
    name: str
    settings: AcmeSettings


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_reply(
    status: int, value: dict[str, Any], headers: dict[str, str] | None = None
) -> AcmeReply:
    return AcmeReply(status, json.dumps(value).encode(), "application/json", headers or {})


def _problem_reply(problem: AcmeProblem) -> AcmeReply:
    return AcmeReply(
        problem.status,
        json.dumps(problem.document()).encode(),
        "application/problem+json",
        dict(problem.headers),
    )


def _protected(jws: acme_jws.JWS) -> dict[str, Any]:
    """The protected header of a parsed JWS, as JSON."""
    try:
        value = json.loads(jws.signature.protected)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", "the JWS protected header is not a JSON object")
    return value


def _jwk_of(public_key: object) -> JWK:
    """The JWK of a certificate's or CSR's public key (RSA or EC)."""
    try:
        pem = public_key.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return JWK.load(pem)
    except (ValueError, TypeError, AttributeError, DeserializationError):
        raise AcmeProblem("badPublicKey", "the key type is not supported") from None


def _thumbprint(jwk: JWK) -> str:
    return b64.b64encode(jwk.thumbprint()).decode()


class _RateLimit:
    """At most ``limit`` events per account in the last hour (a sliding window)."""

    def __init__(self) -> None:
        self._events: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, account: int, limit: int) -> None:
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(account, deque())
            while events and events[0] <= now - 3600:
                events.popleft()
            if len(events) >= limit:
                retry = int(events[0] + 3600 - now) + 1
                raise AcmeProblem(
                    "rateLimited",
                    f"this account may create {limit} orders per hour; retry in {retry} s",
                    429,
                    headers={"Retry-After": str(retry)},
                )
            events.append(now)


class AcmeServer:
    """The ACME service of the node's local CAs: settings (audited, from the CLI) and the
    protocol (``handle``)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: Audit,
        local_ca: LocalCA,
        *,
        validation_threads: int = 8,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._local_ca = local_ca
        self._lock = threading.Lock()
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._orders: dict[str, _Order] = {}
        self._authzs: dict[str, _Authz] = {}
        self._challenges: dict[str, tuple[str, _Challenge]] = {}  # id → (authz id, challenge)
        self._rate = _RateLimit()
        self._validation_threads = validation_threads
        self._pool: ThreadPoolExecutor | None = None
        self._resolvers: dict[str | None, Resolver] = {}
        self._ca_cache: dict[str, tuple[float, _Ca | None]] = {}
        self._accounts: dict[int, tuple[AcmeAccountRow, JWK]] = {}
        self._chains: dict[int, bytes] = {}
        self._recent: OrderedDict[tuple[int, str], tuple[int, bytes]] = OrderedDict()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- administration (CLI) ---------------------------------------------------------------
    @audited("ca.acme.enable", target=lambda ca, *_, **__: ca)
    def enable(self, ca: str, settings: AcmeSettings) -> AcmeSettings:
        settings.check()
        settings = replace(settings, enabled=True)
        with self._store.transaction() as session:
            row = CaRepository(session).by_name(ca)
            if row is None:
                raise NotFound(f"no CA named '{ca}'")
            SettingsRepository(session).set(_setting_key(row.id), settings.to_json())
            TopicRepository(session).bump(Topic.ACME_SERVER)
            self._audit.note(**{k: v for k, v in settings.to_json().items() if k != "enabled"})
        self._ca_cache.clear()
        return settings

    @audited("ca.acme.disable", target=lambda ca, **__: ca)
    def disable(self, ca: str) -> None:
        with self._store.transaction() as session:
            row = CaRepository(session).by_name(ca)
            if row is None:
                raise NotFound(f"no CA named '{ca}'")
            settings = SettingsRepository(session)
            current = settings.get(_setting_key(row.id))
            if not current or not current.get("enabled"):
                raise Conflict(f"ACME is not enabled for CA '{ca}'")
            settings.set(_setting_key(row.id), {**current, "enabled": False})
            TopicRepository(session).bump(Topic.ACME_SERVER)
        self._ca_cache.clear()

    def show(self, ca: str) -> AcmeServiceInfo:
        with self._store.reading() as session:
            row = CaRepository(session).by_name(ca)
            if row is None:
                raise NotFound(f"no CA named '{ca}'")
            value = SettingsRepository(session).get(_setting_key(row.id))
            if value is None:
                raise NotFound(f"ACME was never enabled for CA '{ca}'")
            repo = AcmeRepository(session)
            issued = repo.issued_count(row.id)
            accounts = tuple(
                AcmeAccountInfo(
                    a.id,
                    a.status,
                    tuple(json.loads(a.contact)),
                    a.thumbprint,
                    a.eab_key_id,
                    a.created_at,
                    issued.get(a.id, 0),
                )
                for a in repo.accounts(row.id)
            )
            keys = tuple(
                EabKey(k.key_id, k.created_at, k.account_id) for k in repo.eab_keys(row.id)
            )
        return AcmeServiceInfo(
            ca, f"/acme/{ca}/directory", AcmeSettings.from_json(value), accounts, keys
        )

    @audited("ca.acme.eab-create", target=lambda ca, **__: ca)
    def create_eab_key(self, ca: str) -> tuple[str, str]:
        """A new external account binding key: (key id, HMAC key as base64url). The HMAC key
        is shown this once; the store keeps it sealed."""
        key_id = secrets.token_urlsafe(12)
        hmac_key = secrets.token_bytes(32)
        with self._store.transaction() as session:
            row = CaRepository(session).by_name(ca)
            if row is None:
                raise NotFound(f"no CA named '{ca}'")
            AcmeRepository(session, self._store.vault).add_eab_key(
                row.id, key_id, hmac_key, self._clock.now()
            )
            TopicRepository(session).bump(Topic.ACME_SERVER)
            self._audit.note(key_id=key_id)
        return key_id, b64.b64encode(hmac_key).decode()

    # -- the protocol -----------------------------------------------------------------------
    def handle(self, request: AcmeRequest) -> AcmeReply:
        """Answer one ACME request; every answer carries a fresh nonce."""
        try:
            reply = self._dispatch(request)
        except AcmeProblem as problem:
            reply = _problem_reply(problem)
        except Exception as exc:  # a bug: the client gets a problem document, the log the rest
            log.exception("ACME request %s %s failed", request.method, request.path)
            reply = _problem_reply(
                AcmeProblem("serverInternal", f"internal error ({type(exc).__name__})", 500)
            )
        reply.headers["Replay-Nonce"] = self._new_nonce()
        reply.headers.setdefault("Cache-Control", "no-store")
        index = f'<{request.base}/directory>;rel="index"'
        up = reply.headers.get("Link")
        reply.headers["Link"] = f"{up}, {index}" if up else index
        return reply

    def _dispatch(self, request: AcmeRequest) -> AcmeReply:
        ca = self._ca(request.ca)
        path = request.path
        if path == "directory":
            if request.method not in ("GET", "HEAD"):
                raise AcmeProblem("malformed", "the directory is read with GET", 405)
            return self._directory(request, ca)
        if path == "new-nonce":
            if request.method not in ("GET", "HEAD"):
                raise AcmeProblem("malformed", "new nonces are asked for with HEAD or GET", 405)
            return AcmeReply(200 if request.method == "HEAD" else 204)
        if request.method != "POST":
            raise AcmeProblem("malformed", f"'{path}' takes only POST (RFC 8555 §6.3)", 405)
        if (request.content_type or "").split(";")[0].strip() != "application/jose+json":
            raise AcmeProblem(
                "malformed", "the Content-Type of an ACME request is application/jose+json", 415
            )
        if path == "new-account":
            return self._new_account(request, ca)
        if path == "revoke-cert":
            return self._revoke(request, ca)
        signed = self._verify(request, ca, jwk_allowed=False)
        account = signed.account
        assert account is not None
        parts = path.split("/")
        with acting_as(Actor(f"acme-account-{account.id}", "acme", request.address)):
            if path == "new-order":
                return self._new_order(request, ca, account, signed.payload)
            if path == "key-change":
                return self._key_change(request, ca, account, signed.payload)
            if parts[0] == "acct" and len(parts) == 2:
                return self._account(request, ca, account, parts[1], signed.payload)
            if parts[0] == "acct" and len(parts) == 3 and parts[2] == "orders":
                return self._account_orders(request, account, parts[1])
            if parts[0] == "order" and len(parts) == 2:
                return self._order_reply(request, self._order(parts[1], account), 200)
            if parts[0] == "order" and len(parts) == 3 and parts[2] == "finalize":
                return self._finalize(request, ca, account, parts[1], signed.payload)
            if parts[0] == "authz" and len(parts) == 2:
                return self._authz_reply(request, account, parts[1], signed.payload)
            if parts[0] == "chall" and len(parts) == 2:
                return self._challenge(request, ca, account, parts[1])
            if parts[0] == "cert" and len(parts) == 2:
                return self._certificate(ca, account, parts[1])
        raise AcmeProblem("malformed", f"no ACME resource at '{path}'", 404)

    def _ca(self, name: str) -> _Ca:
        """The CA and its ACME settings, read from the store at most every ``_SETTINGS_TTL``
        seconds (a change by the CLI applies within that time)."""
        now = time.monotonic()
        cached = self._ca_cache.get(name)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            with self._store.reading() as session:
                row = CaRepository(session).by_name(name)
                value = SettingsRepository(session).get(_setting_key(row.id)) if row else None
            found = None
            if row is not None and value and value.get("enabled"):
                found = _Ca(row.id, row.name, AcmeSettings.from_json(value))
            with self._lock:
                if len(self._ca_cache) > 1000:
                    self._ca_cache.clear()
                self._ca_cache[name] = (now + _SETTINGS_TTL, found)
        if found is None:
            raise AcmeProblem("malformed", f"no ACME service for CA '{name}'", 404)
        return found

    def _directory(self, request: AcmeRequest, ca: _Ca) -> AcmeReply:
        base = request.base
        return _json_reply(
            200,
            {
                "newNonce": f"{base}/new-nonce",
                "newAccount": f"{base}/new-account",
                "newOrder": f"{base}/new-order",
                "revokeCert": f"{base}/revoke-cert",
                "keyChange": f"{base}/key-change",
                "meta": {
                    "externalAccountRequired": ca.settings.eab,
                    "website": f"{base}/directory",
                },
            },
        )

    # -- nonces ------------------------------------------------------------------------------
    def _new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(16)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > _MAX_NONCES:
                self._nonces.popitem(last=False)
        return nonce

    def _use_nonce(self, nonce: bytes | None) -> None:
        if nonce is None:
            raise AcmeProblem("badNonce", "the request has no nonce")
        text = b64.b64encode(nonce).decode()
        with self._lock:
            if self._nonces.pop(text, False) is False:
                raise AcmeProblem("badNonce", "the nonce is unknown or was used already")

    # -- JWS -----------------------------------------------------------------------------------
    def _parse_jws(self, data: bytes | str, what: str) -> acme_jws.JWS:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise AcmeProblem("malformed", f"{what} is not JSON") from None
        if not isinstance(obj, dict) or not {"protected", "payload", "signature"} <= set(obj):
            raise AcmeProblem(
                "malformed", f"{what} is not a flattened JWS (protected, payload, signature)"
            )
        if "header" in obj or "signatures" in obj:
            raise AcmeProblem(
                "malformed", f"{what} must have one signature and no unprotected header"
            )
        try:
            parsed: acme_jws.JWS = acme_jws.JWS.from_json(obj)
            return parsed
        except (DeserializationError, ValueError, TypeError) as exc:
            raise AcmeProblem("malformed", f"{what} cannot be read: {exc}") from None

    def _verify(self, request: AcmeRequest, ca: _Ca, *, jwk_allowed: bool) -> _Verified:
        jws = self._parse_jws(request.body, "the request body")
        header = jws.signature.combined
        protected = _protected(jws)
        alg = protected.get("alg")
        if alg not in _ACCOUNT_ALGORITHMS:
            problem = AcmeProblem(
                "badSignatureAlgorithm", f"the signature algorithm '{alg}' is not accepted"
            )
            raise problem
        if header.url != request.url:
            raise AcmeProblem(
                "unauthorized", f"the JWS 'url' ({header.url}) is not the request URL", 401
            )
        self._use_nonce(header.nonce)
        if (header.jwk is None) == (header.kid is None):
            raise AcmeProblem("malformed", "the JWS must carry exactly one of 'jwk' and 'kid'")
        account: AcmeAccountRow | None = None
        if header.kid is not None:
            account, key = self._account_by_kid(request, ca, header.kid)
        else:
            if not jwk_allowed:
                raise AcmeProblem(
                    "malformed", "this request is signed with the account key ('kid')"
                )
            key = cast(JWK, header.jwk)
        self._check_signature(jws, key, alg)
        return _Verified(jws.payload, account, header.jwk, protected)

    @staticmethod
    def _check_signature(jws: acme_jws.JWS, key: JWK, alg: str) -> None:
        kind = {"R": JWKRSA, "P": JWKRSA, "E": JWKEC, "H": JWKOct}
        if not isinstance(key, kind[alg[0]]):
            raise AcmeProblem(
                "badSignatureAlgorithm", f"the algorithm '{alg}' does not fit the key", 400
            )
        try:
            valid = jws.verify(key)
        except Exception:  # a malformed signature or key: josepy raises various errors
            valid = False
        if not valid:
            raise AcmeProblem("malformed", "the JWS signature does not verify")

    def _remember(self, row: AcmeAccountRow) -> tuple[AcmeAccountRow, JWK]:
        """Keep an account (detached from its session) and its parsed key in memory: only
        this server changes accounts, and it updates this cache when it does."""
        entry = (row, cast(JWK, JWK.from_json(json.loads(row.jwk))))
        with self._lock:
            self._accounts[row.id] = entry
        return entry

    def _account_by_kid(
        self, request: AcmeRequest, ca: _Ca, kid: str
    ) -> tuple[AcmeAccountRow, JWK]:
        prefix = f"{request.base}/acct/"
        number = kid[len(prefix) :] if kid.startswith(prefix) else ""
        row = None
        key = None
        if number.isdigit():
            cached = self._accounts.get(int(number))
            if cached is not None:
                row, key = cached
            else:
                with self._store.reading() as session:
                    row = AcmeRepository(session).account(int(number))
                    if row is not None:
                        session.expunge(row)
                if row is not None:
                    row, key = self._remember(row)
        if row is None or key is None or row.ca_id != ca.id:
            raise AcmeProblem("accountDoesNotExist", f"no account '{kid}' at this server")
        if row.status != "valid":
            raise AcmeProblem("unauthorized", f"the account '{kid}' is {row.status}", 401)
        return row, key

    @staticmethod
    def _payload(data: bytes) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise AcmeProblem("malformed", "the JWS payload is not JSON") from None
        if not isinstance(value, dict):
            raise AcmeProblem("malformed", "the JWS payload is not a JSON object")
        return value

    # -- accounts ------------------------------------------------------------------------------
    def _account_json(self, request: AcmeRequest, row: AcmeAccountRow) -> dict[str, Any]:
        value: dict[str, Any] = {
            "status": row.status,
            "contact": json.loads(row.contact),
            "orders": f"{request.base}/acct/{row.id}/orders",
            "key": json.loads(row.jwk),
            "createdAt": _rfc3339(row.created_at),
        }
        if row.eab_key_id:
            value["externalAccountBinding"] = {"kid": row.eab_key_id}
        return value

    @staticmethod
    def _contacts(payload: dict[str, Any]) -> list[str]:
        contact = payload.get("contact", [])
        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise AcmeProblem("malformed", "'contact' must be a list of URLs")
        for item in contact:
            if not item.startswith("mailto:"):
                raise AcmeProblem(
                    "unsupportedContact", f"only mailto: contacts are accepted, not '{item}'"
                )
            address = item.removeprefix("mailto:")
            if "@" not in address or "," in address or "?" in address or len(address) > 254:
                raise AcmeProblem("invalidContact", f"'{item}' is not one email address")
        return contact

    def _new_account(self, request: AcmeRequest, ca: _Ca) -> AcmeReply:
        signed = self._verify(request, ca, jwk_allowed=True)
        if signed.account is not None:
            raise AcmeProblem("malformed", "a new account is signed with its own key ('jwk')")
        assert signed.jwk is not None
        payload = self._payload(signed.payload)
        thumbprint = _thumbprint(signed.jwk)
        with self._store.reading() as session:
            existing = AcmeRepository(session).account_by_thumbprint(ca.id, thumbprint)
            if existing is not None:
                session.expunge(existing)
        if existing is not None:
            return _json_reply(
                200,
                self._account_json(request, existing),
                {"Location": f"{request.base}/acct/{existing.id}"},
            )
        if payload.get("onlyReturnExisting") is True:
            raise AcmeProblem("accountDoesNotExist", "no account exists with this key")
        contact = self._contacts(payload)
        eab = payload.get("externalAccountBinding")
        if ca.settings.eab and eab is None:
            raise AcmeProblem(
                "externalAccountRequired", "this server needs an external account binding"
            )
        with acting_as(Actor("acme-new-account", "acme", request.address)):
            row = self._create_account(request, ca, signed.jwk, thumbprint, contact, eab)
        return _json_reply(
            201, self._account_json(request, row), {"Location": f"{request.base}/acct/{row.id}"}
        )

    def _check_eab(
        self, request: AcmeRequest, ca: _Ca, jwk: JWK, eab: object, repo: AcmeRepository
    ) -> str:
        inner = self._parse_jws(json.dumps(eab), "the external account binding")
        header = inner.signature.combined
        protected = _protected(inner)
        alg = protected.get("alg")
        if alg not in _EAB_ALGORITHMS:
            raise AcmeProblem(
                "malformed", f"the external account binding must be HMAC-signed, not '{alg}'"
            )
        if header.nonce is not None or header.url != request.url or not header.kid:
            raise AcmeProblem(
                "malformed",
                "the external account binding needs 'kid', the newAccount URL and no nonce",
            )
        key_row = repo.eab_key(header.kid)
        if key_row is None or key_row.ca_id != ca.id:
            raise AcmeProblem("unauthorized", "unknown external account binding key", 401)
        if key_row.account_id is not None:
            raise AcmeProblem("unauthorized", "this external account binding key was used", 401)
        self._check_signature(inner, JWKOct(key=repo.eab_secret(key_row)), alg)
        try:
            bound = json.loads(inner.payload)
        except ValueError:
            bound = None
        if bound != jwk.to_partial_json():
            raise AcmeProblem(
                "malformed", "the external account binding does not bind the account key"
            )
        return key_row.key_id

    def _create_account(
        self,
        request: AcmeRequest,
        ca: _Ca,
        jwk: JWK,
        thumbprint: str,
        contact: list[str],
        eab: object,
    ) -> AcmeAccountRow:
        with self._audit.action("acme.account.create", ca.name), self._store.transaction() as s:
            repo = AcmeRepository(s, self._store.vault)
            eab_key_id = self._check_eab(request, ca, jwk, eab, repo) if eab is not None else None
            if repo.account_by_thumbprint(ca.id, thumbprint) is not None:
                raise AcmeProblem("malformed", "an account with this key was created meanwhile")
            row = repo.add_account(
                AcmeAccountRow(
                    ca_id=ca.id,
                    thumbprint=thumbprint,
                    jwk=json.dumps(jwk.to_partial_json()),
                    status="valid",
                    contact=json.dumps(contact),
                    eab_key_id=eab_key_id,
                    created_at=self._clock.now(),
                )
            )
            if eab_key_id is not None:
                key_row = repo.eab_key(eab_key_id)
                assert key_row is not None
                key_row.account_id = row.id
            self._audit.note(account=row.id, thumbprint=thumbprint, eab_key_id=eab_key_id)
            s.flush()
            s.expunge(row)
        return row

    def _account(
        self, request: AcmeRequest, ca: _Ca, account: AcmeAccountRow, number: str, data: bytes
    ) -> AcmeReply:
        if number != str(account.id):
            raise AcmeProblem("unauthorized", "an account can only be read by its own key", 403)
        if data == b"":
            return _json_reply(200, self._account_json(request, account))
        payload = self._payload(data)
        what = f"{ca.name} account {account.id}"
        with self._audit.action("acme.account.update", what), self._store.transaction() as session:
            row = AcmeRepository(session).account(account.id)
            assert row is not None
            if "contact" in payload:
                row.contact = json.dumps(self._contacts(payload))
            if "status" in payload:
                if payload["status"] != "deactivated":
                    raise AcmeProblem("malformed", "an account's status can only be deactivated")
                row.status = "deactivated"
                self._audit.note(status="deactivated")
            session.flush()
            session.expunge(row)
        self._remember(row)
        return _json_reply(200, self._account_json(request, row))

    def _account_orders(
        self, request: AcmeRequest, account: AcmeAccountRow, number: str
    ) -> AcmeReply:
        if number != str(account.id):
            raise AcmeProblem("unauthorized", "an account's orders are read by its own key", 403)
        with self._lock:
            ids = [o.id for o in self._orders.values() if o.account_id == account.id]
        return _json_reply(200, {"orders": [f"{request.base}/order/{i}" for i in ids]})

    def _key_change(
        self, request: AcmeRequest, ca: _Ca, account: AcmeAccountRow, data: bytes
    ) -> AcmeReply:
        inner = self._parse_jws(data, "the key change")
        header = inner.signature.combined
        protected = _protected(inner)
        alg = protected.get("alg")
        if alg not in _ACCOUNT_ALGORITHMS:
            raise AcmeProblem("badSignatureAlgorithm", f"the algorithm '{alg}' is not accepted")
        if header.jwk is None or header.kid is not None or header.nonce is not None:
            raise AcmeProblem("malformed", "the inner JWS of a key change carries 'jwk' only")
        if header.url != request.url:
            raise AcmeProblem("malformed", "the inner JWS 'url' is not the keyChange URL")
        self._check_signature(inner, header.jwk, alg)
        payload = self._payload(inner.payload)
        if payload.get("account") != f"{request.base}/acct/{account.id}":
            raise AcmeProblem("malformed", "the key change names another account")
        if payload.get("oldKey") != json.loads(account.jwk):
            raise AcmeProblem("malformed", "'oldKey' is not the account's current key")
        new_thumbprint = _thumbprint(header.jwk)
        what = f"{ca.name} account {account.id}"
        with (
            self._audit.action("acme.account.key-change", what),
            self._store.transaction() as session,
        ):
            repo = AcmeRepository(session)
            other = repo.account_by_thumbprint(ca.id, new_thumbprint)
            if other is not None:
                raise AcmeProblem(
                    "malformed",
                    "another account already has this key",
                    409,
                    headers={"Location": f"{request.base}/acct/{other.id}"},
                )
            row = repo.account(account.id)
            assert row is not None
            row.jwk = json.dumps(header.jwk.to_partial_json())
            row.thumbprint = new_thumbprint
            self._audit.note(thumbprint=new_thumbprint)
            session.flush()
            session.expunge(row)
        self._remember(row)
        return _json_reply(200, self._account_json(request, row))

    # -- orders and authorizations ---------------------------------------------------------------
    def _identifiers(self, ca: _Ca, payload: dict[str, Any]) -> list[dict[str, str]]:
        raw = payload.get("identifiers")
        if not isinstance(raw, list) or not raw:
            raise AcmeProblem("malformed", "an order needs a non-empty list of identifiers")
        if len(raw) > _MAX_IDENTIFIERS:
            raise AcmeProblem("rejectedIdentifier", f"at most {_MAX_IDENTIFIERS} identifiers")
        allow = compile_admin_regex(ca.settings.allow, code="acme-allow")
        result: list[dict[str, str]] = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise AcmeProblem("malformed", "an identifier is {type, value}")
            kind, value = item.get("type"), item["value"]
            ident = {"type": str(kind), "value": value}
            if kind == "dns":
                value = value.lower().rstrip(".")
                if "*" in value:
                    raise AcmeProblem(
                        "rejectedIdentifier",
                        f"this CA issues no wildcard certificates ('{value}')",
                        identifier=ident,
                    )
                try:
                    check_dns_name(value)
                except PolicyViolation as exc:
                    raise AcmeProblem("rejectedIdentifier", str(exc), identifier=ident) from None
                try:
                    ipaddress.ip_address(value)
                    raise AcmeProblem(
                        "malformed", f"'{value}' is an IP address: use type 'ip'", identifier=ident
                    )
                except ValueError:
                    pass
            elif kind == "ip":
                try:
                    value = str(ipaddress.ip_address(value))
                except ValueError:
                    raise AcmeProblem(
                        "malformed", f"'{value}' is not an IP address", identifier=ident
                    ) from None
                if not ca.settings.allow_ip:
                    raise AcmeProblem(
                        "rejectedIdentifier",
                        f"this server issues no certificates for IP addresses ('{value}')",
                        identifier=ident,
                    )
            else:
                raise AcmeProblem(
                    "unsupportedIdentifier",
                    f"identifier type '{kind}' is not supported",
                    identifier=ident,
                )
            if not allow.fullmatch(value):
                raise AcmeProblem(
                    "rejectedIdentifier",
                    f"'{value}' is not a name this server issues for",
                    identifier=ident,
                )
            normal = {"type": kind, "value": value}
            if normal not in result:
                result.append(normal)
        return result

    def _new_order(
        self, request: AcmeRequest, ca: _Ca, account: AcmeAccountRow, data: bytes
    ) -> AcmeReply:
        payload = self._payload(data)
        if "notBefore" in payload or "notAfter" in payload:
            raise AcmeProblem("malformed", "notBefore and notAfter are not supported")
        identifiers = self._identifiers(ca, payload)
        self._rate.take(account.id, ca.settings.orders_per_hour)
        now = self._clock.now()
        expires = now + dt.timedelta(minutes=ca.settings.order_minutes)
        order = _Order(secrets.token_urlsafe(12), ca.id, account.id, identifiers, expires, [])
        authzs = []
        for ident in identifiers:
            kinds = [
                k for k in ca.settings.challenges if not (ident["type"] == "ip" and k != "http-01")
            ]
            if not kinds:
                raise AcmeProblem(
                    "rejectedIdentifier",
                    "no enabled challenge type can validate an IP address (enable http-01)",
                    identifier=ident,
                )
            challenges = [
                _Challenge(secrets.token_urlsafe(12), k, secrets.token_urlsafe(32)) for k in kinds
            ]
            authzs.append(_Authz(secrets.token_urlsafe(12), order.id, ident, expires, challenges))
        order.authz_ids = [a.id for a in authzs]
        with self._lock:
            self._purge(now)
            self._orders[order.id] = order
            for authz in authzs:
                self._authzs[authz.id] = authz
                for challenge in authz.challenges:
                    self._challenges[challenge.id] = (authz.id, challenge)
        return self._order_reply(request, order, 201)

    def _purge(self, now: dt.datetime) -> None:
        """Forget orders a day past their deadline (the caller holds ``_lock``)."""
        old = [o for o in self._orders.values() if o.expires < now - dt.timedelta(days=1)]
        for order in old:
            del self._orders[order.id]
            for authz_id in order.authz_ids:
                authz = self._authzs.pop(authz_id, None)
                for challenge in authz.challenges if authz else ():
                    self._challenges.pop(challenge.id, None)

    def _order(self, order_id: str, account: AcmeAccountRow) -> _Order:
        with self._lock:
            order = self._orders.get(order_id)
        if order is None or order.account_id != account.id:
            raise AcmeProblem("malformed", f"no order '{order_id}' for this account", 404)
        return order

    def _refresh(self, order: _Order) -> None:
        """Bring an order's status up to date (deadline, authorizations)."""
        now = self._clock.now()
        with self._lock:
            if order.status in ("pending", "ready") and now >= order.expires:
                order.status = "invalid"
                order.error = AcmeProblem("unauthorized", "the order's deadline passed").document()
                for authz_id in order.authz_ids:
                    authz = self._authzs.get(authz_id)
                    if authz is not None and authz.status == "pending":
                        authz.status = "expired"
            if order.status == "pending":
                statuses = [self._authzs[a].status for a in order.authz_ids if a in self._authzs]
                if any(s != "valid" and s != "pending" for s in statuses):
                    order.status = "invalid"
                elif statuses and all(s == "valid" for s in statuses):
                    order.status = "ready"

    def _order_reply(self, request: AcmeRequest, order: _Order, status: int) -> AcmeReply:
        self._refresh(order)
        base = request.base
        value: dict[str, Any] = {
            "status": order.status,
            "expires": _rfc3339(order.expires),
            "identifiers": order.identifiers,
            "authorizations": [f"{base}/authz/{a}" for a in order.authz_ids],
            "finalize": f"{base}/order/{order.id}/finalize",
        }
        if order.error is not None:
            value["error"] = order.error
        if order.certificate is not None:
            value["certificate"] = f"{base}/cert/{order.certificate}"
        return _json_reply(status, value, {"Location": f"{base}/order/{order.id}"})

    def _authz(self, authz_id: str, account: AcmeAccountRow) -> _Authz:
        with self._lock:
            authz = self._authzs.get(authz_id)
            order = self._orders.get(authz.order_id) if authz else None
        if authz is None or order is None or order.account_id != account.id:
            raise AcmeProblem("malformed", f"no authorization '{authz_id}' for this account", 404)
        self._refresh(order)
        return authz

    def _authz_json(self, request: AcmeRequest, authz: _Authz) -> dict[str, Any]:
        return {
            "status": authz.status,
            "expires": _rfc3339(authz.expires),
            "identifier": authz.identifier,
            "challenges": [self._challenge_json(request, c) for c in authz.challenges],
        }

    @staticmethod
    def _challenge_json(request: AcmeRequest, challenge: _Challenge) -> dict[str, Any]:
        value: dict[str, Any] = {
            "type": challenge.type,
            "url": f"{request.base}/chall/{challenge.id}",
            "status": challenge.status,
            "token": challenge.token,
        }
        if challenge.validated is not None:
            value["validated"] = _rfc3339(challenge.validated)
        if challenge.error is not None:
            value["error"] = challenge.error
        return value

    def _authz_reply(
        self, request: AcmeRequest, account: AcmeAccountRow, authz_id: str, data: bytes
    ) -> AcmeReply:
        authz = self._authz(authz_id, account)
        if data != b"":
            if self._payload(data).get("status") != "deactivated":
                raise AcmeProblem("malformed", "an authorization can only be deactivated")
            with self._lock:
                if authz.status in ("pending", "valid"):
                    authz.status = "deactivated"
        return _json_reply(200, self._authz_json(request, authz))

    def _challenge(
        self, request: AcmeRequest, ca: _Ca, account: AcmeAccountRow, challenge_id: str
    ) -> AcmeReply:
        with self._lock:
            found = self._challenges.get(challenge_id)
        if found is None:
            raise AcmeProblem("malformed", f"no challenge '{challenge_id}'", 404)
        authz = self._authz(found[0], account)
        challenge = found[1]
        start = False
        with self._lock:
            if challenge.status == "pending" and authz.status == "pending":
                challenge.status = "processing"
                start = True
        if start:
            order = self._orders[authz.order_id]
            target = Target(
                authz.identifier["type"],
                authz.identifier["value"],
                challenge.type,
                challenge.token,
                f"{challenge.token}.{account.thumbprint}",
                ca.settings.http01_port,
                ca.settings.tls_alpn01_port,
            )
            resolver = self._resolver(ca.settings.dns_server)
            future = self._validation_pool().submit(
                self._validate, target, resolver, authz, challenge, order
            )
            # A quick validation is answered at once (saves the client its polls); a slow one
            # goes on on its thread and the client sees "processing" meanwhile.
            with contextlib.suppress(FutureTimeout):
                future.result(timeout=_ANSWER_WAIT)
        headers = {"Link": f'<{request.base}/authz/{authz.id}>;rel="up"'}
        reply = _json_reply(200, self._challenge_json(request, challenge), headers)
        return reply

    def _resolver(self, dns_server: str | None) -> Resolver:
        with self._lock:
            resolver = self._resolvers.get(dns_server)
            if resolver is None:
                resolver = self._resolvers[dns_server] = Resolver(dns_server)
            return resolver

    def _validation_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._validation_threads, thread_name_prefix="acme-validation"
                )
            return self._pool

    def _validate(
        self,
        target: Target,
        resolver: Resolver,
        authz: _Authz,
        challenge: _Challenge,
        order: _Order,
    ) -> None:
        """On a validation thread: check the challenge, then record the outcome."""
        remaining = (order.expires - self._clock.now()).total_seconds()
        error: dict[str, object] | None = None
        try:
            validate(target, resolver, min(_VALIDATION_TIMEOUT, remaining))
        except AcmeProblem as problem:
            error = problem.document()
        except Exception as exc:  # a bug or an odd peer: the challenge fails, the reason kept
            error = AcmeProblem(
                "serverInternal", f"validation failed: {type(exc).__name__}", 500
            ).document()
        with self._lock:
            if error is None:
                challenge.status = "valid"
                challenge.validated = self._clock.now()
                if authz.status == "pending":
                    authz.status = "valid"
            else:
                challenge.status = "invalid"
                challenge.error = error
                if authz.status == "pending":
                    authz.status = "invalid"
                    order.error = error

    # -- finalize, certificates, revocation --------------------------------------------------------
    def _finalize(
        self, request: AcmeRequest, ca: _Ca, account: AcmeAccountRow, order_id: str, data: bytes
    ) -> AcmeReply:
        order = self._order(order_id, account)
        self._refresh(order)
        with self._lock:
            if order.status != "ready":
                raise AcmeProblem("orderNotReady", f"the order is {order.status}, not ready", 403)
            order.status = "processing"
        try:
            csr = self._csr(self._payload(data), order, account)
            with self._audit.action("acme.issue", f"{ca.name} account {account.id}"):
                try:
                    result = self._local_ca.sign_checked(
                        ca.name,
                        csr,
                        profile=ca.settings.profile,
                        days=ca.settings.days,
                        acme_account=account.id,
                    )
                except (PolicyViolation, DecodeError) as exc:
                    raise AcmeProblem("badCSR", str(exc)) from None
        except AcmeProblem:
            with self._lock:
                order.status = "ready"  # the client may try again with a better CSR
            raise
        serial = serial_hex(result.certificate.serial_number)
        with self._lock:
            order.certificate = serial
            order.status = "valid"
            # kept for the download that follows (bounded: older ones are read from the store)
            self._recent[(ca.id, serial)] = (account.id, result.pem() + self._chain_pem(ca))
            while len(self._recent) > 1000:
                self._recent.popitem(last=False)
        return self._order_reply(request, order, 200)

    def _csr(
        self, payload: dict[str, Any], order: _Order, account: AcmeAccountRow
    ) -> x509.CertificateSigningRequest:
        text = payload.get("csr")
        if not isinstance(text, str):
            raise AcmeProblem("malformed", "finalize needs 'csr' (base64url DER)")
        try:
            csr = x509.load_der_x509_csr(b64.b64decode(text))
            check_csr(csr)
        except (ValueError, TypeError):
            raise AcmeProblem("badCSR", "the CSR cannot be decoded") from None
        except PolicyViolation as exc:
            raise AcmeProblem("badCSR", str(exc)) from None
        names: set[tuple[str, str]] = set()
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names |= {("dns", n.lower()) for n in sans.get_values_for_type(x509.DNSName)}
            names |= {("ip", str(a)) for a in sans.get_values_for_type(x509.IPAddress)}
            if len(list(sans)) != len(sans.get_values_for_type(x509.DNSName)) + len(
                sans.get_values_for_type(x509.IPAddress)
            ):
                raise AcmeProblem("badCSR", "the CSR names something other than DNS names and IPs")
        except x509.ExtensionNotFound:
            pass
        for attribute in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            value = str(attribute.value).lower()
            try:
                names.add(("ip", str(ipaddress.ip_address(value))))
            except ValueError:
                names.add(("dns", value))
        ordered = {(i["type"], i["value"]) for i in order.identifiers}
        if names != ordered:
            extra = sorted(v for _, v in names - ordered)
            missing = sorted(v for _, v in ordered - names)
            detail = "the CSR's names are not the order's identifiers"
            if extra:
                detail += f"; not authorised: {', '.join(extra)}"
            if missing:
                detail += f"; missing: {', '.join(missing)}"
            raise AcmeProblem("badCSR", detail)
        account_key = cast(JWK, JWK.from_json(json.loads(account.jwk)))
        if _jwk_of(csr.public_key()).thumbprint() == account_key.thumbprint():
            raise AcmeProblem("badCSR", "the certificate key must not be the account key")
        return csr

    def _certificate(self, ca: _Ca, account: AcmeAccountRow, serial: str) -> AcmeReply:
        try:
            canonical = parse_serial(serial)
        except CertwayError:
            raise AcmeProblem("malformed", f"no certificate '{serial}'", 404) from None
        recent = self._recent.get((ca.id, canonical))
        if recent is not None and recent[0] == account.id:
            return AcmeReply(200, recent[1], "application/pem-certificate-chain")
        with self._store.reading() as session:
            item = CaRepository(session).issued_by_serial(ca.id, canonical)
            owner = item.acme_account if item else None
            der = item.certificate_der if item else b""
        if not der or owner != account.id:
            raise AcmeProblem("malformed", f"no certificate '{serial}' for this account", 404)
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        return AcmeReply(200, pem + self._chain_pem(ca), "application/pem-certificate-chain")

    def _chain_pem(self, ca: _Ca) -> bytes:
        """What follows the certificate in a download: the issuing CA and its parents, the
        root left out unless it is the issuer itself."""
        chain_pem = self._chains.get(ca.id)
        if chain_pem is None:  # CA certificates never change: built once per CA
            chain = self._local_ca.chain(ca.name)
            if chain and chain[-1].subject == chain[-1].issuer and len(chain) > 1:
                chain = chain[:-1]
            chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
            self._chains[ca.id] = chain_pem
        return chain_pem

    def _revoke(self, request: AcmeRequest, ca: _Ca) -> AcmeReply:
        signed = self._verify(request, ca, jwk_allowed=True)
        payload = self._payload(signed.payload)
        text = payload.get("certificate")
        if not isinstance(text, str):
            raise AcmeProblem("malformed", "revokeCert needs 'certificate' (base64url DER)")
        try:
            cert = x509.load_der_x509_certificate(b64.b64decode(text))
        except (ValueError, TypeError):
            raise AcmeProblem("malformed", "the certificate cannot be decoded") from None
        reason_code = payload.get("reason", 0)
        if not isinstance(reason_code, int) or reason_code not in _REVOCATION_REASONS:
            raise AcmeProblem(
                "badRevocationReason",
                f"reason {reason_code} is not accepted; use one of "
                f"{', '.join(str(r) for r in _REVOCATION_REASONS)}",
            )
        serial = serial_hex(cert.serial_number)
        with self._store.reading() as session:
            item = CaRepository(session).issued_by_serial(ca.id, serial)
            owner = item.acme_account if item else None
            same = item is not None and item.certificate_der == cert.public_bytes(
                serialization.Encoding.DER
            )
        if not same:
            raise AcmeProblem("malformed", "this server did not issue that certificate", 404)
        if signed.account is not None:
            if owner != signed.account.id:
                raise AcmeProblem("unauthorized", "the account did not order this certificate", 403)
            actor = Actor(f"acme-account-{signed.account.id}", "acme", request.address)
        else:
            assert signed.jwk is not None
            if _jwk_of(cert.public_key()).thumbprint() != signed.jwk.thumbprint():
                raise AcmeProblem(
                    "unauthorized", "the request is not signed by the certificate's key", 403
                )
            actor = Actor("acme-certificate-key", "acme", request.address)
        with acting_as(actor):
            try:
                self._local_ca.revoke(ca.name, serial, reason=_REVOCATION_REASONS[reason_code])
            except Conflict as exc:
                raise AcmeProblem("alreadyRevoked", str(exc)) from None
        return AcmeReply(200)
