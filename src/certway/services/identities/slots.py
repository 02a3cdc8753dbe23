"""The storage every identity use case shares: slots (server, client, one per domain) with
numbered versions, read and activated here.

Activation is one database transaction (new version + active pointer + counter bump), so a
crash leaves either the old or the new certificate active. Listeners watch the
``version.identity`` counter and rebuild their TLS contexts when it moves.
"""

from __future__ import annotations

import json
import threading

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from certway.clock import Clock
from certway.errors import NotFound, PolicyViolation
from certway.pki.keys import PrivateKey
from certway.pki.text import fingerprint, format_name, serial_hex
from certway.services.audit import Audit
from certway.services.identities.model import (
    TEMP_CA_SETTING,
    ActiveIdentity,
    IdentityInfo,
    IdentityKind,
    VersionInfo,
    alt_names_of,
    normalise_domain,
    pem_of,
    slot_label,
)
from certway.services.local_ca import LocalCA
from certway.services.node_settings import IDENTITY_VERSION, NodeSettings
from certway.services.trusted_cas import TrustedCAs
from certway.store.db import Store
from certway.store.repositories import KeyRepository, SettingsRepository, SlotRepository
from certway.store.schema import CertSlotRow, CertVersionRow
from certway.trust.identity import certificate_text

__all__ = ["Slots"]


class Slots:
    """A node's certificate slots: what the use cases (CSR, upload, client certificate,
    domains, factory setup, SNI lookup) build on."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: Audit,
        node: NodeSettings,
        trusted: TrustedCAs,
        local_ca: LocalCA,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._node = node
        self._trusted = trusted
        self._local_ca = local_ca
        self._lock = threading.Lock()  # guards in-memory state rebuilt on change (SNI map)

    # -- reading ------------------------------------------------------------------------------
    def version(self) -> int:
        with self._store.reading() as session:
            value = SettingsRepository(session).get(IDENTITY_VERSION)
        return value if isinstance(value, int) else 0

    def _active_row(
        self, repo: SlotRepository, kind: str, name: str
    ) -> tuple[CertSlotRow, CertVersionRow] | None:
        slot = repo.get(kind, name)
        if slot is None or slot.active_version_id is None:
            return None
        version = repo.version(slot.active_version_id)
        return None if version is None else (slot, version)

    @staticmethod
    def _identity(slot: CertSlotRow, version: CertVersionRow) -> ActiveIdentity:
        chain = (
            tuple(x509.load_pem_x509_certificates(version.chain_pem.encode()))
            if (version.chain_pem)
            else ()
        )
        return ActiveIdentity(
            slot.kind,
            slot.name,
            version.version,
            x509.load_der_x509_certificate(version.certificate_der),
            chain,
            version.key_id,
        )

    def active(self, kind: IdentityKind = "server", name: str = "") -> ActiveIdentity | None:
        """The active certificate of a slot; the client identity defaults to the server's."""
        if kind == "domain":
            name = normalise_domain(name)
        with self._store.reading() as session:
            repo = SlotRepository(session)
            found = self._active_row(repo, kind, name)
            if found is None and kind == "client":
                found = self._active_row(repo, "server", "")
            return None if found is None else self._identity(*found)

    def private_key(self, identity: ActiveIdentity) -> PrivateKey:
        """The private key of an active identity, for TLS listeners. Never exported."""
        with self._store.reading() as session:
            return KeyRepository(session, self._store.vault).get(identity.key_id)

    def info(self, kind: IdentityKind = "server", name: str = "") -> IdentityInfo:
        name = self._slot(kind, name)
        with self._store.reading() as session:
            repo = SlotRepository(session)
            found = self._active_row(repo, kind, name)
            fallback = False
            if found is None and kind == "client":
                found = self._active_row(repo, "server", "")
                fallback = True
            if found is None:
                raise NotFound(f"the {slot_label(kind, name)} has no certificate yet")
            slot, version = found
            identity = self._identity(slot, version)
            warnings = json.loads(version.warnings or "[]")
            source = "server certificate (default)" if fallback else version.source
        cert = identity.certificate
        return IdentityInfo(
            kind=kind,
            name=name,
            version=identity.version,
            subject=format_name(cert.subject),
            issuer=format_name(cert.issuer),
            serial=serial_hex(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint=fingerprint(cert),
            alt_names=alt_names_of(cert),
            source=source,
            warnings=warnings,
            temporary=self.is_temporary(cert),
            chain=[format_name(c.subject) for c in identity.chain],
            pem=pem_of([cert, *identity.chain]),
            text=certificate_text(cert),
        )

    def history(self, kind: IdentityKind = "server", name: str = "") -> list[VersionInfo]:
        name = self._slot(kind, name)
        with self._store.reading() as session:
            repo = SlotRepository(session)
            slot = repo.get(kind, name)
            if slot is None:
                return []
            return [
                VersionInfo(
                    v.version,
                    v.subject,
                    v.not_after,
                    v.source,
                    v.created_at,
                    v.id == slot.active_version_id,
                )
                for v in repo.versions(slot)
            ]

    # -- temporary CA -------------------------------------------------------------------
    def temporary_ca(self) -> x509.Certificate | None:
        with self._store.reading() as session:
            name = SettingsRepository(session).get(TEMP_CA_SETTING)
        if not isinstance(name, str):
            return None
        try:
            return self._local_ca.certificate(name)
        except NotFound:
            return None

    def is_temporary(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was issued by the factory's temporary CA."""
        temp = self.temporary_ca()
        if temp is None or cert.issuer != temp.subject:
            return False
        try:
            cert.verify_directly_issued_by(temp)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    # -- activation (one transaction each) ----------------------------------------------------
    def _activate(
        self,
        kind: str,
        name: str,
        cert: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
        key: PrivateKey,
        pending_key_id: str | None,
        source: str,
        warnings: list[str],
    ) -> CertVersionRow:
        """One transaction: key (if new), version, active pointer, CSR consumed, counter."""
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = SlotRepository(session)
            slot = repo.get_or_create(kind, name, now)
            key_id = pending_key_id or KeyRepository(session, self._store.vault).put(key, now)
            version = repo.add_version(
                slot,
                CertVersionRow(
                    certificate_der=cert.public_bytes(serialization.Encoding.DER),
                    chain_pem=pem_of(chain),
                    key_id=key_id,
                    subject=format_name(cert.subject),
                    not_after=cert.not_valid_after_utc,
                    source=source,
                    warnings=json.dumps(warnings),
                    created_at=now,
                ),
            )
            if pending_key_id is not None:
                slot.pending_csr_der = None
                slot.pending_key_id = None
                slot.pending_form = None
                slot.pending_created_at = None
            SettingsRepository(session).bump(IDENTITY_VERSION)
            self._audit.note(version=version.version)
        return version

    def _activate_existing(self, kind: str, name: str, old: CertVersionRow, source: str) -> None:
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = SlotRepository(session)
            slot = repo.get_or_create(kind, name, now)
            repo.add_version(
                slot,
                CertVersionRow(
                    certificate_der=old.certificate_der,
                    chain_pem=old.chain_pem,
                    key_id=old.key_id,
                    subject=old.subject,
                    not_after=old.not_after,
                    source=source,
                    warnings=old.warnings,
                    created_at=now,
                ),
            )
            SettingsRepository(session).bump(IDENTITY_VERSION)

    # -- slot names ---------------------------------------------------------------------------
    def _slot(self, kind: str, name: str) -> str:
        """The slot's name as stored: server and client slots have none; a domain name is
        normalised (``normalise_domain``) and must have been added (else NotFound). Every
        method taking a kind and a name goes through here, so the API, the UI and the CLI
        find the same domain however it is typed."""
        if kind not in ("server", "client", "domain"):
            raise PolicyViolation("kind", f"unknown certificate kind '{kind}'")
        if kind != "domain":
            if name:
                raise PolicyViolation("kind", f"the {kind} certificate has no name")
            return name
        domain = normalise_domain(name)
        with self._store.reading() as session:
            if SlotRepository(session).get("domain", domain) is None:
                raise NotFound(f"no domain '{name}': add the domain first")
        return domain
