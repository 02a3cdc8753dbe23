"""The local CA: roots, intermediates, imported CAs, signing, revocation, CRLs.

Publishing a CRL after a revocation costs only the new revocations: the previous CRL (kept in
memory, or read back from the store) is extended with ``pki.crl.extend_crl``.

Longer than most modules (about 740 lines): creating CAs, signing, revoking and publishing
share the in-memory issuer, chain and CRL state per CA and the OCSP index; they are kept in
one class so that state has one owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certway.clock import Clock, utc
from certway.errors import CertwayError, Conflict, NotFound, PolicyViolation, TokenError
from certway.pki.convert import pkcs12_export
from certway.pki.crl import (
    REASON_NAMES,
    CrlParams,
    build_crl,
    extend_crl,
    parse_reason,
    revoked_entry,
)
from certway.pki.csr import CsrForm, SubjectFields, build_csr, check_csr
from certway.pki.issue import (
    BACKDATE,
    PROFILES,
    Issuer,
    check_days,
    create_root,
    issue_from_csr,
)
from certway.pki.keys import (
    PrivateKey,
    PublicKey,
    describe_key,
    generate_key,
    key_matches,
    load_private_key,
    private_key_pem,
)
from certway.pki.load import load_certificates, load_csr
from certway.pki.names import parse_subject, san_text
from certway.pki.ocsp_responder import CertStatus, OcspQuery, issuer_hashes
from certway.pki.text import fingerprint, format_name, parse_serial, serial_hex
from certway.services.audit import Audit, audited, audited_by_its_write
from certway.services.node_settings import read_node_config
from certway.services.tokens import Tokens
from certway.store.db import Session, Store
from certway.store.direct import AUDIT, ISSUED, DirectUnit
from certway.store.group import GroupCommit
from certway.store.repositories import (
    CaRepository,
    KeyRepository,
    RevocationRecord,
    SettingsRepository,
)
from certway.store.schema import CaRow, IssuedRow
from certway.store.topics import Topic, TopicRepository
from certway.trust.anchors import key_id as certificate_key_id
from certway.trust.records import CaRecords, IssuerRecords, RecordedRevocation

__all__ = [
    "MAX_BATCH",
    "BatchItem",
    "CaInfo",
    "CaSettings",
    "IssuedInfo",
    "LocalCA",
    "PreparedSignature",
    "PublishedCrl",
    "SignResult",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CaSettings:
    """Where relying parties find revocation data for what this CA issues."""

    crl_urls: tuple[str, ...] = ()
    ocsp_url: str | None = None
    node_urls: bool = True
    """With no URL given: the node's publication URLs (``node set --publish-url``)."""

    def check(self) -> None:
        for url in (*self.crl_urls, *([self.ocsp_url] if self.ocsp_url else [])):
            if not re.match(r"^https?://[^\s/]+", url):
                raise PolicyViolation("url", f"'{url}' is not an http:// or https:// URL")


@dataclass(frozen=True, slots=True)
class CaInfo:
    name: str
    kind: str
    parent: str | None
    subject: str
    not_after: dt.datetime
    key: str
    fingerprint: str
    crl_urls: tuple[str, ...]
    ocsp_url: str | None
    issued: int
    revoked: int
    crl_number: int
    path_length: int | None
    """Its BasicConstraints path length (None: no limit)."""

    @property
    def can_sign_ca(self) -> bool:
        """Whether it may sign an intermediate CA (a path length of 0 forbids it)."""
        return self.path_length != 0


@dataclass(frozen=True, slots=True)
class IssuedInfo:
    serial: str
    subject: str
    alt_names: str
    profile: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: str  # valid | expired | revoked
    revoked_at: dt.datetime | None
    reason: str | None
    acme_account: int | None = None  # the ACME account that ordered it


@dataclass(frozen=True, slots=True)
class SignResult:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, up to (not including) the root

    def pem(self, *, with_chain: bool = False) -> bytes:
        certs = (self.certificate, *self.chain) if with_chain else (self.certificate,)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class PreparedSignature:
    """A CSR checked and signed, not yet recorded (``LocalCA.prepare_sign``): hand the
    certificate out only once ``LocalCA.record_on_loop`` wrote its rows."""

    ca: str
    result: SignResult
    unit: DirectUnit  # the inventory row, the "ok" audit row and the change topic


MAX_BATCH = 1000
"""Most CSRs one ``sign_batch`` call takes."""

_ISSUED_TOPIC = Topic.CA_ISSUED
"""What an issuance moves: it wakes no peer's reload (the inventory is read when shown)."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One CSR of a batch: its certificate, or why it was not signed."""

    index: int  # position in the batch, from 0
    result: SignResult | None
    error: str | None


@dataclass(frozen=True, slots=True)
class IssuedWithKey:
    """A certificate issued for a key generated here (``LocalCA.issue_with_key``): the key
    leaves certway only in these encodings, never stored."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, up to (not including) the root

    def key_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted when a passphrase is given."""
        return private_key_pem(self.key, passphrase)

    def pkcs12(self, passphrase: bytes, friendly_name: str | None = None) -> bytes:
        """Key + certificate + chain in one PKCS#12 (AES-256; a passphrase is required)."""
        return pkcs12_export(self.key, self.certificate, self.chain, passphrase, friendly_name)

    def pem(self, *, with_chain: bool = False) -> bytes:
        return SignResult(self.certificate, self.chain).pem(with_chain=with_chain)


@dataclass(frozen=True, slots=True)
class PublishedCrl:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    der: bytes

    @property
    def pem(self) -> bytes:
        crl = x509.load_der_x509_crl(self.der)
        return crl.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class _CrlState:
    """The last published CRL of a CA: the revocations it covers, its size, its DER."""

    covers_revocation_id: int
    entries: int
    der: bytes


class LocalCA:
    RECORD_TOPICS = (Topic.LOCAL_CAS, Topic.CA_RECORDS)  # what records() is built from
    """The node's certificate authorities, persisted in its store."""

    def __init__(
        self, store: Store, clock: Clock, audit: Audit, tokens: Tokens | None = None
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._audit = audit
        self._lock = threading.Lock()
        self._issuers: dict[int, Issuer] = {}
        self._signing: dict[str, _SigningCa] = {}
        self._issuance: GroupCommit[None] = GroupCommit(
            store, finish=lambda unit: unit.bump(_ISSUED_TOPIC)
        )
        self._chains: dict[int, tuple[x509.Certificate, ...]] = {}
        self._crl_state: dict[int, _CrlState] = {}
        # OCSP: (hash algorithm, issuerNameHash, issuerKeyHash) → CA id, and per hash
        # algorithm the CA ids already hashed (CA certificates never change).
        self._ocsp_lock = threading.Lock()
        self._ocsp_index: dict[tuple[str, bytes, bytes], int] = {}
        self._ocsp_hashed: dict[str, set[int]] = {}
        # The revocation records as a revocation source (``records``): revocations only
        # grow, so each call reads just those recorded since the previous one.
        self._records_lock = threading.Lock()
        self._records_version: tuple[int, int] | None = None
        self._records = CaRecords()
        self._record_cas: dict[int, tuple[str, x509.Certificate, bool]] = {}
        self._revoked: dict[int, dict[int, RecordedRevocation]] = {}
        self._records_after: dict[int, int] = {}

    # -- creating CAs ---------------------------------------------------------------------
    @audited("ca.create-root")
    def create_root(
        self,
        name: str,
        subject: str,
        *,
        key_type: str = "ec:p256",
        days: int = 3650,
        settings: CaSettings | None = None,
        token: str | None = None,
    ) -> CaInfo:
        """A self-signed root; with ``token``, its key is generated inside that PKCS#11
        token and never leaves it."""
        settings = self._with_node_urls(name, settings or CaSettings())
        self._check_new(name, days, settings)
        subject_name = x509.Name(parse_subject(subject))
        now = self._clock.now()
        key, in_token = self._new_key(name, key_type, token)
        try:
            cert = create_root(
                key,
                subject_name,
                not_before=now - BACKDATE,
                not_after=now + dt.timedelta(days=days),
            )
            return self._save_ca(name, "root", None, cert, key, settings, in_token=in_token)
        except BaseException:
            self._drop_token_key(in_token)
            raise

    @audited("ca.create-intermediate")
    def create_intermediate(
        self,
        name: str,
        parent: str,
        subject: str,
        *,
        key_type: str = "ec:p256",
        days: int = 1825,
        settings: CaSettings | None = None,
        token: str | None = None,
    ) -> CaInfo:
        """An intermediate signed by ``parent``; with ``token``, its key is generated
        inside that PKCS#11 token and never leaves it."""
        settings = self._with_node_urls(name, settings or CaSettings())
        self._check_new(name, days, settings)
        parent_row, parent_issuer = self._issuer(parent)
        subject_name = x509.Name(parse_subject(subject))
        if not subject_name:
            raise PolicyViolation("empty-name", "a CA needs a subject, e.g. /CN=Example Issuing CA")
        now = self._clock.now()
        key, in_token = self._new_key(name, key_type, token)
        try:
            cert = parent_issuer.issue(
                key.public_key(),
                subject_name,
                profile="sub-ca",
                not_before=now - BACKDATE,
                not_after=now + dt.timedelta(days=days),
            )
            return self._save_ca(
                name,
                "intermediate",
                parent_row.id,
                cert,
                key,
                settings,
                issued_by=parent_row.id,
                in_token=in_token,
            )
        except BaseException:
            self._drop_token_key(in_token)
            raise

    def _new_key(
        self, name: str, key_type: str, token: str | None
    ) -> tuple[PrivateKey, tuple[int, str] | None]:
        """A new CA key: sealed in software, or generated in ``token`` (labelled with the
        CA's name); the second item is (token id, key object id) for a token key."""
        if token is None:
            return generate_key(key_type), None
        tokens = self._token_service()
        token_id = tokens.token_id(token)
        object_id, key = tokens.generate(token_id, key_type, name)
        return key, (token_id, object_id)

    def _drop_token_key(self, in_token: tuple[int, str] | None) -> None:
        """Delete a token key whose CA could not be created (best effort: the error that
        stopped the creation is the one to report)."""
        if in_token is not None and self._tokens is not None:
            with contextlib.suppress(CertwayError):
                self._tokens.session(in_token[0]).destroy(in_token[1])

    def _token_service(self) -> Tokens:
        if self._tokens is None:
            raise TokenError("this node was started without PKCS#11 token support")
        return self._tokens

    @audited("ca.import")
    def import_ca(
        self,
        name: str,
        cert_data: bytes,
        key_data: bytes,
        *,
        passphrase: bytes | None = None,
        settings: CaSettings | None = None,
    ) -> CaInfo:
        settings = settings or CaSettings()
        self._check_new(name, 1, settings)
        certs = load_certificates(cert_data)
        if len(certs) != 1:
            raise PolicyViolation(
                "ca-import", f"give exactly one CA certificate; the file holds {len(certs)}"
            )
        cert = certs[0]
        key = load_private_key(key_data, passphrase)
        if not key_matches(key, cert.public_key()):
            raise PolicyViolation(
                "key-mismatch", "the private key does not match the CA certificate"
            )
        Issuer(cert, key)  # refuses non-CA certificates with a clear message
        if cert.not_valid_after_utc <= self._clock.now():
            raise PolicyViolation(
                "expired", f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
            )
        return self._save_ca(name, "imported", self._parent_of(cert), cert, key, settings)

    @audited("ca.import")
    def import_token_ca(
        self,
        name: str,
        cert_data: bytes,
        *,
        token: str,
        key_label: str,
        settings: CaSettings | None = None,
    ) -> CaInfo:
        """Import a CA whose key already is in a PKCS#11 token (found by its label); the
        key stays there and the CA keeps a reference to it."""
        settings = settings or CaSettings()
        self._check_new(name, 1, settings)
        certs = load_certificates(cert_data)
        if len(certs) != 1:
            raise PolicyViolation(
                "ca-import", f"give exactly one CA certificate; the file holds {len(certs)}"
            )
        cert = certs[0]
        tokens = self._token_service()
        token_id = tokens.token_id(token)
        object_id, key = tokens.key_by_label(token_id, key_label)
        if not key_matches(key, cert.public_key()):
            raise PolicyViolation(
                "key-mismatch",
                f"the key labelled '{key_label}' in token '{token}' does not match the CA "
                "certificate",
            )
        Issuer(cert, key)  # refuses non-CA certificates with a clear message
        if cert.not_valid_after_utc <= self._clock.now():
            raise PolicyViolation(
                "expired", f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
            )
        return self._save_ca(
            name,
            "imported",
            self._parent_of(cert),
            cert,
            key,
            settings,
            in_token=(token_id, object_id),
        )

    def _parent_of(self, cert: x509.Certificate) -> int | None:
        """The local CA that issued ``cert``, if any."""
        if cert.issuer == cert.subject:
            return None
        with self._store.reading() as session:
            for row in CaRepository(session).all():
                parent_cert = x509.load_der_x509_certificate(row.certificate_der)
                if parent_cert.subject == cert.issuer:
                    try:
                        cert.verify_directly_issued_by(parent_cert)
                    except (ValueError, TypeError, InvalidSignature):
                        continue
                    return row.id
        return None

    def _check_new(self, name: str, days: int, settings: CaSettings) -> None:
        if not _NAME_RE.match(name):
            raise PolicyViolation(
                "ca-name",
                f"CA name '{name}' must be 1-64 letters, digits, '.', '_' or '-'",
            )
        check_days(days)
        settings.check()
        with self._store.reading() as session:
            if CaRepository(session).by_name(name) is not None:
                raise Conflict(f"a CA named '{name}' already exists")

    def _save_ca(
        self,
        name: str,
        kind: str,
        parent_id: int | None,
        cert: x509.Certificate,
        key: object,
        settings: CaSettings,
        *,
        issued_by: int | None = None,
        in_token: tuple[int, str] | None = None,
    ) -> CaInfo:
        """Store a new CA; ``issued_by`` also records it in that local CA's inventory;
        ``in_token`` (token id, key object id) stores a reference to a token key instead
        of sealing the key."""
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = CaRepository(session)
            if repo.by_name(name) is not None:
                raise Conflict(f"a CA named '{name}' already exists")
            keys = KeyRepository(session, self._store.vault)
            key_id = keys.put(key, now) if in_token is None else None  # type: ignore[arg-type]
            repo.add(
                CaRow(
                    name=name,
                    kind=kind,
                    parent_id=parent_id,
                    certificate_der=cert.public_bytes(serialization.Encoding.DER),
                    key_id=key_id,
                    token_id=in_token[0] if in_token else None,
                    token_key_id=in_token[1] if in_token else None,
                    subject=format_name(cert.subject),
                    not_after=cert.not_valid_after_utc,
                    crl_urls="\n".join(settings.crl_urls),
                    ocsp_url=settings.ocsp_url,
                    crl_days=7,
                    last_crl_number=0,
                    created_at=now,
                )
            )
            if issued_by is not None:
                repo.add_issued(_issued_row(issued_by, cert, "sub-ca", now))
            # Listeners re-read the node's CAs (own-CA revocation checks) when this moves.
            TopicRepository(session).bump(Topic.LOCAL_CAS)
            self._audit.note(
                subject=format_name(cert.subject),
                fingerprint=fingerprint(cert),
                key=self._key_description(keys, key_id, in_token, cert),
            )
        return self.info(name)

    def _with_node_urls(self, name: str, settings: CaSettings) -> CaSettings:
        """A new CA given no URL publishes where the node does: its certificates then name
        the CRL at ``<base>/crl/<name>.crl`` and the OCSP responder at ``<base>/ocsp``."""
        if settings.crl_urls or settings.ocsp_url or not settings.node_urls:
            return settings
        with self._store.reading() as session:
            base = read_node_config(SettingsRepository(session)).publication_base
        return CaSettings(crl_urls=(f"{base}/crl/{quote(name)}.crl",), ocsp_url=f"{base}/ocsp")

    # -- reading --------------------------------------------------------------------------
    def cas(self) -> list[CaInfo]:
        with self._store.reading() as session:
            repo = CaRepository(session)
            rows = repo.all()
            names = {row.id: row.name for row in rows}
            counts = repo.counts()
            keys = KeyRepository(session, self._store.vault)
            return [
                self._info(
                    row,
                    names,
                    counts,
                    self._key_description(
                        keys,
                        row.key_id,
                        (row.token_id, row.token_key_id or "") if row.token_id else None,
                        x509.load_der_x509_certificate(row.certificate_der),
                    ),
                )
                for row in rows
            ]

    def _key_description(
        self,
        keys: KeyRepository,
        key_id: str | None,
        in_token: tuple[int, str] | None,
        cert: x509.Certificate,
    ) -> str:
        if in_token is None:
            return keys.description(key_id) if key_id else "?"
        token = self._tokens.name(in_token[0]) if self._tokens else "?"
        public = cert.public_key()
        kind = describe_key(public) if isinstance(public, PublicKey) else "?"
        return f"{kind} in token '{token}'"

    def info(self, name: str) -> CaInfo:
        for info in self.cas():
            if info.name == name:
                return info
        raise self._not_found(name)

    def _info(
        self,
        row: CaRow,
        names: dict[int, str],
        counts: dict[int, tuple[int, int]],
        key: str,
    ) -> CaInfo:
        cert = x509.load_der_x509_certificate(row.certificate_der)
        issued, revoked = counts.get(row.id, (0, 0))
        return CaInfo(
            name=row.name,
            kind=row.kind,
            parent=names.get(row.parent_id) if row.parent_id else None,
            subject=row.subject,
            not_after=row.not_after,
            key=key,
            fingerprint=fingerprint(cert),
            crl_urls=tuple(u for u in row.crl_urls.split("\n") if u),
            ocsp_url=row.ocsp_url,
            issued=issued,
            revoked=revoked,
            crl_number=row.last_crl_number,
            path_length=_path_length(cert),
        )

    def certificate(self, name: str) -> x509.Certificate:
        return self._issuer(name)[1].certificate

    def chain(self, name: str) -> list[x509.Certificate]:
        """The CA's certificate followed by its parents, root last."""
        chain: list[x509.Certificate] = []
        with self._store.reading() as session:
            repo = CaRepository(session)
            row = repo.by_name(name)
            if row is None:
                raise self._not_found(name)
            seen: set[int] = set()
            current: CaRow | None = row
            while current is not None and current.id not in seen:
                seen.add(current.id)
                chain.append(x509.load_der_x509_certificate(current.certificate_der))
                current = repo.by_id(current.parent_id) if current.parent_id else None
        return chain

    def issued(self, name: str, *, search: str | None = None) -> list[IssuedInfo]:
        now = self._clock.now()
        with self._store.reading() as session:
            repo = CaRepository(session)
            row = repo.by_name(name)
            if row is None:
                raise self._not_found(name)
            revoked = repo.revocations_by_serial(row.id)
            result = []
            for item in repo.issued(row.id, search=search):
                rev = revoked.get(item.serial)
                status = "revoked" if rev else ("expired" if item.not_after <= now else "valid")
                result.append(
                    IssuedInfo(
                        serial=item.serial,
                        subject=item.subject,
                        alt_names=item.alt_names,
                        profile=item.profile,
                        not_before=item.not_before,
                        not_after=item.not_after,
                        status=status,
                        revoked_at=rev.revoked_at if rev else None,
                        reason=rev.reason if rev else None,
                        acme_account=item.acme_account,
                    )
                )
            return result

    def issued_certificate(self, name: str, serial: str) -> x509.Certificate:
        canonical = parse_serial(serial)
        with self._store.reading() as session:
            repo = CaRepository(session)
            row = repo.by_name(name)
            if row is None:
                raise self._not_found(name)
            item = repo.issued_by_serial(row.id, canonical)
            if item is None:
                raise NotFound(f"CA '{name}' has issued no certificate with serial {canonical}")
            return x509.load_der_x509_certificate(item.certificate_der)

    # -- signing --------------------------------------------------------------------------
    @audited_by_its_write("ca.sign")
    def sign(
        self, name: str, csr_data: bytes, *, profile: str = "server-client", days: int = 365
    ) -> SignResult:
        """Check and sign a CSR (PEM or DER); record it in the inventory. The audit row is
        inserted with the inventory row (a refusal is audited on its own)."""
        # announced: a signature prepared meanwhile by another request commits with this one
        with self._issuance.coming():
            csr = load_csr(csr_data)
            check_csr(csr)
            return self._issue(name, csr, profile=profile, days=days, audit="ca.sign")

    @audited_by_its_write("ca.sign")
    def prepare_sign(
        self, name: str, csr_data: bytes, *, profile: str = "server-client", days: int = 365
    ) -> PreparedSignature:
        """``sign`` up to the write: the CSR checked and signed (a refusal audited as ``sign``
        audits it), its rows queued in a unit for ``record_on_loop``."""
        csr = load_csr(csr_data)
        check_csr(csr)
        record, result = self._prepared(name, csr, profile=profile, days=days, audit="ca.sign")
        unit = DirectUnit()
        record(unit)
        unit.bump(_ISSUED_TOPIC)
        return PreparedSignature(name, result, unit)

    async def record_on_loop(self, prepared: PreparedSignature) -> SignResult:
        """Write a prepared signature's rows in one statement awaited on the event loop
        (PostgreSQL: ``DirectUnit.commit_on_loop``), then hand the certificate out. A failed
        write is audited as ``sign`` audits it (its row written on a worker thread)."""
        try:
            await prepared.unit.commit_on_loop(self._store)
        except Exception as exc:
            await asyncio.to_thread(self._audit.record_failure, "ca.sign", prepared.ca, exc)
            raise
        return prepared.result

    def sign_checked(
        self,
        name: str,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str = "server-client",
        days: int = 365,
        acme_account: int | None = None,
    ) -> SignResult:
        """Sign a checked CSR; ``acme_account`` records the ACME account that ordered it.
        The caller's audited action (ACME finalize, ``issue_with_key``) notes the serial and
        writes its row in the same transaction."""
        return self._issue(name, csr, profile=profile, days=days, acme_account=acme_account)

    def _issue(
        self,
        name: str,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        days: int,
        acme_account: int | None = None,
        audit: str | None = None,
    ) -> SignResult:
        """Sign, then record the certificate (and with ``audit``, that action's "ok" row) in
        one transaction, shared with the signatures made at the same moment
        (certway.store.group); an enclosing audited action's row joins it."""
        record, result = self._prepared(
            name, csr, profile=profile, days=days, acme_account=acme_account, audit=audit
        )
        self._issuance.run(record)
        return result

    def _prepared(
        self,
        name: str,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        days: int,
        acme_account: int | None = None,
        audit: str | None = None,
    ) -> tuple[Callable[[DirectUnit], None], SignResult]:
        """The certificate signed, and the write that records it (queues its rows in a
        unit); nothing is written yet."""
        ca = self._signing_ca(name)
        now = self._clock.now()
        cert = issue_from_csr(
            ca.issuer, csr, profile=profile, not_before=now, days=days, checked=True
        )
        row = _issued_values(ca.id, cert, profile, now, acme_account)
        noted = {"serial": row["serial"], "subject": row["subject"]}
        self._audit.note(**noted)
        audited = self._audit.values(audit, name, noted) if audit else None

        def record(unit: DirectUnit) -> None:
            unit.add(ISSUED, row)
            if audited is not None:
                unit.add(AUDIT, audited)

        return record, SignResult(cert, ca.chain)

    def _signing_ca(self, name: str) -> _SigningCa:
        """The CA ``name`` as issuance needs it, cached: a CA's row, certificate and key
        never change once it exists (no CA is renamed, replaced or deleted), so only an
        unknown name costs a look-up (and one created since is found then)."""
        found = self._signing.get(name)
        if found is None:
            row, issuer = self._issuer(name)
            found = _SigningCa(row.id, issuer, self._issued_chain(row.id, name))
            self._signing[name] = found
        return found

    def _issued_chain(self, ca_id: int, name: str) -> tuple[x509.Certificate, ...]:
        """The chain handed out with a certificate: the issuing CA up to (not including)
        the root. CA certificates never change: built once per CA."""
        chain = self._chains.get(ca_id)
        if chain is None:
            full = self.chain(name)
            if full and full[-1].subject == full[-1].issuer:
                full = full[:-1]
            chain = self._chains[ca_id] = tuple(full)
        return chain

    @audited("ca.sign-batch")
    def sign_batch(
        self,
        name: str,
        csrs: list[bytes],
        *,
        profile: str = "server-client",
        days: int = 365,
        progress: Callable[[int], None] | None = None,
    ) -> list[BatchItem]:
        """Sign many CSRs (PEM or DER each) in one transaction. A CSR that cannot be signed
        (unreadable, bad signature, weak key, wildcard...) gets its error in its item and
        the others are signed; an unknown CA, profile or validity refuses the whole batch.
        ``progress`` is called with the number of CSRs done so far after each one."""
        if not csrs:
            raise PolicyViolation("batch-empty", "the batch holds no CSR")
        if len(csrs) > MAX_BATCH:
            raise PolicyViolation(
                "batch-size", f"a batch holds at most {MAX_BATCH} CSRs, not {len(csrs)}"
            )
        check_days(days)
        if profile not in PROFILES:
            raise PolicyViolation(
                "profile", f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}"
            )
        row, issuer = self._issuer(name)
        chain = self._issued_chain(row.id, name)
        now = self._clock.now()
        items: list[BatchItem] = []
        rows: list[IssuedRow] = []
        for index, data in enumerate(csrs):
            try:
                csr = load_csr(data)
                check_csr(csr)
                cert = issue_from_csr(
                    issuer, csr, profile=profile, not_before=now, days=days, checked=True
                )
            except CertwayError as exc:
                items.append(BatchItem(index, None, str(exc)))
                if progress is not None:
                    progress(index + 1)
                continue
            rows.append(_issued_row(row.id, cert, profile, now))
            items.append(BatchItem(index, SignResult(cert, chain), None))
            if progress is not None:
                progress(index + 1)
        self._audit.note(
            signed=len(rows),
            refused=len(items) - len(rows),
            serials=[r.serial for r in rows],
        )
        if rows:
            with self._store.transaction() as session:
                CaRepository(session).add_issued_many(rows)
                TopicRepository(session).bump(Topic.CA_ISSUED)
        return items

    @audited("ca.issue")
    def issue_certificate(
        self,
        name: str,
        public_key: PublicKey,
        subject: x509.Name,
        *,
        alt_names: list[x509.GeneralName],
        profile: str = "server-client",
        days: int = 365,
    ) -> SignResult:
        """Issue for a key held by certway itself (no CSR): the factory server certificate."""
        row, issuer = self._issuer(name)
        now = self._clock.now()
        cert = issuer.issue(
            public_key,
            subject,
            profile=profile,
            alt_names=alt_names,
            not_before=now - BACKDATE,
            not_after=min(now + dt.timedelta(days=days), issuer.certificate.not_valid_after_utc),
        )
        with self._store.transaction() as session:
            CaRepository(session).add_issued(_issued_row(row.id, cert, profile, now))
            self._note_issued(cert)
            TopicRepository(session).bump(Topic.CA_ISSUED)
        full = self.chain(name)
        if full and full[-1].subject == full[-1].issuer:
            full = full[:-1]
        return SignResult(cert, tuple(full))

    @audited("ca.issue-with-key")
    def issue_with_key(
        self,
        name: str,
        common_name: str,
        *,
        alt_names: tuple[str, ...] = (),
        subject: str = "",
        profile: str = "server-client",
        key_type: str = "ec:p256",
        days: int = 365,
    ) -> IssuedWithKey:
        """One step to a certificate: a new key, a certificate for it from CA ``name`` with the
        CSR name rules (the CN also in the SAN list; ``DNS:``/``IP:`` names; wildcards
        refused), recorded in the inventory. The key is returned, never stored."""
        extra = parse_subject(subject) if subject else []
        if any(a.oid == NameOID.COMMON_NAME for a in extra):
            raise PolicyViolation(
                "subject-syntax", "give the common name on its own, not in the subject"
            )
        form = CsrForm(
            common_name=common_name,
            additional_names=alt_names,
            subject=SubjectFields(extra=tuple(extra)),
        )
        self._issuer(name)  # an unknown CA is reported before a key is generated
        check_days(days)
        key = generate_key(key_type)
        csr, _plan = build_csr(key, form)
        # noted before the transaction that records the certificate (its serial and subject
        # are noted in it), so the audit row is written with the change
        self._audit.note(profile=profile, key=key_type)
        result = self.sign_checked(name, csr, profile=profile, days=days)
        return IssuedWithKey(key, result.certificate, result.chain)

    def records(self) -> CaRecords:
        """The CAs' revocation records as a revocation source for validation: a revocation
        counts from the moment it is recorded, by this process or another one. Costs two
        small queries when nothing changed; otherwise only new revocations are read."""
        with self._store.reading() as session:
            cas, records = TopicRepository(session).versions(self.RECORD_TOPICS)
            repo = CaRepository(session)
            version = (cas, records)
            with self._records_lock:
                if version == self._records_version:
                    return self._records
                if self._records_version is None or self._records_version[0] != cas:
                    self._record_cas = {
                        row.id: (
                            row.name,
                            x509.load_der_x509_certificate(row.certificate_der),
                            row.kind != "imported",
                        )
                        for row in repo.all()
                    }
                    self._revoked = {ca_id: {} for ca_id in self._record_cas}
                    self._records_after = {}
                for ca_id, revoked in self._revoked.items():
                    found = repo.revocations(ca_id, after_id=self._records_after.get(ca_id, 0))
                    for record in found:
                        revoked[int(record.serial, 16)] = RecordedRevocation(
                            utc(record.revoked_at), record.reason
                        )
                    if found:
                        self._records_after[ca_id] = found[-1].id
                self._records = CaRecords(
                    {
                        certificate_key_id(cert): IssuerRecords(
                            name, cert.subject.public_bytes(), self._revoked[ca_id], complete
                        )
                        for ca_id, (name, cert, complete) in self._record_cas.items()
                    }
                )
                self._records_version = version
                return self._records

    # -- revocation and CRLs --------------------------------------------------------------
    @audited("ca.revoke", target=lambda name, serial, **_: f"{name} serial {serial}")
    def revoke(
        self,
        name: str,
        serial: str,
        *,
        reason: str | None = None,
        revoked_at: dt.datetime | None = None,
        invalidity_date: dt.datetime | None = None,
        allow_unlisted: bool = False,
    ) -> PublishedCrl:
        """Revoke a certificate and publish a new CRL at once: one transaction, so a
        revocation is never stored without its CRL and its audit row."""
        canonical = parse_serial(serial)
        flag = parse_reason(reason)
        reason_name = REASON_NAMES[flag] if flag is not None else None
        now = self._clock.now()
        when = utc(revoked_at) if revoked_at else now
        if when > now:
            raise PolicyViolation("revocation-date", "the revocation date is in the future")
        row, issuer = self._issuer(name)
        with self._lock, self._store.transaction() as session:
            repo = CaRepository(session)
            existing = repo.revocation(row.id, canonical)
            if existing is not None:
                raise Conflict(
                    f"serial {canonical} was already revoked on "
                    f"{existing.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            if not allow_unlisted and repo.issued_by_serial(row.id, canonical) is None:
                raise NotFound(
                    f"CA '{name}' has issued no certificate with serial {canonical}: a "
                    "certificate it issued before it was imported here can be revoked as an "
                    "unlisted serial"
                )
            repo.add_revocation(
                row.id,
                canonical,
                when,
                reason_name,
                utc(invalidity_date) if invalidity_date else None,
            )
            published, state = self._publish(session, row, issuer, None)
        self._crl_state[row.id] = state
        return published

    def current_crl(self, name: str, *, next_update_days: int | None = None) -> PublishedCrl:
        """The CRL to publish: the stored one while fresh (before half of its validity and
        covering every revocation), else a new one."""
        row, _ = self._issuer(name)
        now = self._clock.now()
        with self._store.reading() as session:
            repo = CaRepository(session)
            stored = repo.latest_crl(row.id)
            newest = repo.revocations(row.id, after_id=stored.covers_revocation_id if stored else 0)
            if (
                stored is not None
                and not newest
                and (next_update_days is None or next_update_days == row.crl_days)
                and now < stored.this_update + (stored.next_update - stored.this_update) / 2
            ):
                return PublishedCrl(
                    stored.number,
                    stored.this_update,
                    stored.next_update,
                    stored.entries,
                    stored.crl_der,
                )
        return self.publish_crl(name, next_update_days=next_update_days)

    @audited("ca.crl.publish")
    def publish_crl(self, name: str, *, next_update_days: int | None = None) -> PublishedCrl:
        """Sign and store a new CRL with the next CRL number (the previous CRL extended with
        the revocations made since, or built from scratch for a CA's first CRL)."""
        if next_update_days is not None and not 1 <= next_update_days <= 365:
            raise PolicyViolation(
                "crl-validity", "the CRL's validity (days to its next update) must be 1 to 365"
            )
        row, issuer = self._issuer(name)
        with self._lock, self._store.transaction() as session:
            published, state = self._publish(session, row, issuer, next_update_days)
        self._crl_state[row.id] = state
        return published

    def _publish(
        self, session: Session, row: CaRow, issuer: Issuer, next_update_days: int | None
    ) -> tuple[PublishedCrl, _CrlState]:
        """Sign and store the next CRL in ``session`` (the caller holds ``self._lock``)."""
        TopicRepository(session).bump(Topic.CA_RECORDS)
        repo = CaRepository(session)
        number = repo.next_crl_number(row.id)
        days = next_update_days or row.crl_days
        if next_update_days is not None:
            ca_row = repo.by_id(row.id)
            assert ca_row is not None
            ca_row.crl_days = next_update_days
        previous = self._crl_state.get(row.id) or _stored_state(repo, row.id)
        covered = previous.covers_revocation_id if previous else 0
        newer = repo.revocations(row.id, after_id=covered)
        now = self._clock.now()
        params = CrlParams(number, now, now + dt.timedelta(days=days))
        entries = [_entry(r) for r in newer]
        if previous is None:
            der = build_crl(issuer, entries, params).public_bytes(serialization.Encoding.DER)
        else:
            der = extend_crl(issuer, previous.der, entries, params)
        state = _CrlState(
            newer[-1].id if newer else covered,
            (previous.entries if previous else 0) + len(newer),
            der,
        )
        repo.save_crl(
            row.id,
            number,
            now,
            params.next_update,
            state.covers_revocation_id,
            der,
            state.entries,
        )
        self._audit.note(crl_number=number, entries=state.entries)
        return PublishedCrl(number, now, params.next_update, state.entries, der), state

    # -- publication (CRLs, OCSP) ------------------------------------------------------------
    def ocsp_lookup(self, query: OcspQuery) -> CertStatus | None:
        """The OCSP status of ``query``'s certificate, or None when its CertID names none of
        our CAs. Revoked (with date and reason) if in the CA's revocations; good if in its
        inventory of issued certificates; unknown otherwise."""
        ca_id = self._ocsp_ca(query)
        if ca_id is None:
            return None
        serial = serial_hex(query.serial)
        with self._store.reading() as session:
            repo = CaRepository(session)
            row = repo.by_id(ca_id)
            if row is None:  # removed since it was indexed
                with self._ocsp_lock:
                    self._ocsp_index = {k: v for k, v in self._ocsp_index.items() if v != ca_id}
                return None
            issuer = self._issuer_of(session, row)
            revocation = repo.revocation(ca_id, serial)
            if revocation is not None:
                return CertStatus(
                    "revoked",
                    issuer,
                    revoked_at=utc(revocation.revoked_at),
                    reason=parse_reason(revocation.reason) if revocation.reason else None,
                )
            if repo.issued_by_serial(ca_id, serial) is not None:
                return CertStatus("good", issuer)
            return CertStatus("unknown", issuer)

    def _ocsp_ca(self, query: OcspQuery) -> int | None:
        """The id of the CA a CertID names; CAs not yet hashed are hashed on a miss."""
        algorithm = query.hash_algorithm
        key = (algorithm.name, query.issuer_name_hash, query.issuer_key_hash)
        found = self._ocsp_index.get(key)
        if found is not None:
            return found
        with self._ocsp_lock, self._store.reading() as session:
            hashed = self._ocsp_hashed.setdefault(algorithm.name, set())
            for row in CaRepository(session).all():
                if row.id in hashed:
                    continue
                cert = x509.load_der_x509_certificate(row.certificate_der)
                name_hash, key_hash = issuer_hashes(cert, algorithm)
                self._ocsp_index.setdefault((algorithm.name, name_hash, key_hash), row.id)
                hashed.add(row.id)
            return self._ocsp_index.get(key)

    # -- helpers --------------------------------------------------------------------------
    def _note_issued(self, cert: x509.Certificate) -> None:
        self._audit.note(serial=serial_hex(cert.serial_number), subject=format_name(cert.subject))

    def _issuer(self, name: str) -> tuple[CaRow, Issuer]:
        with self._store.reading() as session:
            row = CaRepository(session).by_name(name)
            if row is None:
                raise self._not_found(name)
            return row, self._issuer_of(session, row)

    def _issuer_of(self, session: Session, row: CaRow) -> Issuer:
        issuer = self._issuers.get(row.id)
        if issuer is None:
            cert = x509.load_der_x509_certificate(row.certificate_der)
            key: PrivateKey
            if row.token_id is not None:
                key = self._token_service().key(row.token_id, row.token_key_id or "")
            else:
                assert row.key_id is not None  # a CA has a sealed key or a token key
                key = KeyRepository(session, self._store.vault).get(row.key_id)
            issuer = Issuer(
                cert,
                key,
                crl_urls=tuple(u for u in row.crl_urls.split("\n") if u),
                ocsp_url=row.ocsp_url,
            )
            self._issuers[row.id] = issuer
        return issuer

    def _not_found(self, name: str) -> NotFound:
        with self._store.reading() as session:
            names = [row.name for row in CaRepository(session).all()]
        known = f"; known CAs: {', '.join(names)}" if names else "; no CA exists yet"
        return NotFound(f"no CA named '{name}'{known}")


@dataclass(frozen=True, slots=True)
class _SigningCa:
    id: int
    issuer: Issuer
    chain: tuple[x509.Certificate, ...]  # handed out with its certificates (no root)


def _path_length(cert: x509.Certificate) -> int | None:
    """The path length of a CA certificate's BasicConstraints (None: no limit)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:  # not stored: a CA certificate always has one
        return None


def _issued_row(ca_id: int, cert: x509.Certificate, profile: str, at: dt.datetime) -> IssuedRow:
    return IssuedRow(**_issued_values(ca_id, cert, profile, at))


def _issued_values(
    ca_id: int,
    cert: x509.Certificate,
    profile: str,
    at: dt.datetime,
    acme_account: int | None = None,
) -> dict[str, Any]:
    """The inventory columns of ``cert`` (every one but the id)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt_names = ", ".join(san_text(n) for n in sans)
    except x509.ExtensionNotFound:
        alt_names = ""
    return {
        "ca_id": ca_id,
        "serial": serial_hex(cert.serial_number),
        "subject": format_name(cert.subject),
        "alt_names": alt_names,
        "profile": profile,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "certificate_der": cert.public_bytes(serialization.Encoding.DER),
        "issued_at": at,
        "acme_account": acme_account,
    }


def _stored_state(repo: CaRepository, ca_id: int) -> _CrlState | None:
    stored = repo.latest_crl(ca_id)
    if stored is None:
        return None
    return _CrlState(stored.covers_revocation_id, stored.entries, stored.crl_der)


def _entry(record: RevocationRecord) -> x509.RevokedCertificate:
    return revoked_entry(
        int(record.serial, 16),
        record.revoked_at,
        parse_reason(record.reason) if record.reason else None,
        record.invalidity_date,
    )
