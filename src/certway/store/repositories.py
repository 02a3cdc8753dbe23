"""Repositories: the only code that speaks SQL. Each takes the session of one transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, undefer

from certway.pki.keys import (
    PrivateKey,
    describe_key,
    load_private_key,
    private_key_der,
    public_key_der,
)
from certway.store.schema import (
    AdminAccountRow,
    AlarmStateRow,
    ApiTokenRow,
    AuditRow,
    CaRow,
    CertSlotRow,
    CertVersionRow,
    ClusterRow,
    CrlRow,
    CrlSourceRow,
    HeldCrlRow,
    IssuedRow,
    PeerRow,
    PrivateKeyRow,
    RevocationRow,
    SettingRow,
    TokenRow,
    TrustDefaultRow,
    TrustedCaRow,
)
from certway.store.vault import KeyVault

__all__ = [
    "PER_PEER_SETTINGS",
    "AdminRepository",
    "AlarmStateRepository",
    "ApiTokenRepository",
    "AuditRepository",
    "CaRepository",
    "HeldCrlRepository",
    "KeyRepository",
    "PeerRepository",
    "RevocationRecord",
    "SettingsRepository",
    "SlotRepository",
    "TokenRepository",
    "TrustRepository",
]


# Settings that belong to one peer of a cluster; every other setting is cluster-wide.
PER_PEER_SETTINGS = frozenset({"node", "zones.status", "ocsp.failures"})


def node_id_of(session: Session) -> int:
    """The id of the peer this unit of work runs on (``Store`` puts it in the session)."""
    return int(session.info.get("node_id", 1))


def _aad(key_id: str) -> bytes:
    return b"certway/private-key/" + key_id.encode()


class KeyRepository:
    """Private keys, sealed with the vault before they reach the database."""

    def __init__(self, session: Session, vault: KeyVault) -> None:
        self._session = session
        self._vault = vault

    def put(self, key: PrivateKey, at: dt.datetime) -> str:
        key_id = secrets.token_hex(16)
        plaintext = private_key_der(key)
        self._session.add(
            PrivateKeyRow(
                id=key_id,
                description=describe_key(key),
                public_sha256=hashlib.sha256(public_key_der(key)).hexdigest(),
                sealed=self._vault.seal(plaintext, _aad(key_id)),
                created_at=at,
            )
        )
        self._session.flush()
        return key_id

    def get(self, key_id: str) -> PrivateKey:
        row = self._session.get(PrivateKeyRow, key_id)
        if row is None:
            raise LookupError(key_id)
        return load_private_key(self._vault.open(row.sealed, _aad(key_id)))

    def description(self, key_id: str) -> str:
        row = self._session.get(PrivateKeyRow, key_id)
        return row.description if row is not None else "?"


class TokenRepository:
    """Registered PKCS#11 tokens; the PIN is sealed with the vault like a private key."""

    def __init__(self, session: Session, vault: KeyVault) -> None:
        self._session = session
        self._vault = vault

    def add(self, name: str, module: str, token_label: str, pin: str, at: dt.datetime) -> int:
        row = TokenRow(
            name=name,
            module=module,
            token_label=token_label,
            sealed_pin=self._vault.seal(pin.encode(), _token_aad(name)),
            created_at=at,
        )
        self._session.add(row)
        self._session.flush()
        return row.id

    def all(self) -> Sequence[TokenRow]:
        return self._session.scalars(select(TokenRow).order_by(TokenRow.name)).all()

    def by_name(self, name: str) -> TokenRow | None:
        return self._session.scalars(select(TokenRow).where(TokenRow.name == name)).first()

    def by_id(self, token_id: int) -> TokenRow | None:
        return self._session.get(TokenRow, token_id)

    def pin(self, row: TokenRow) -> str:
        return self._vault.open(row.sealed_pin, _token_aad(row.name)).decode()

    def ca_keys(self, token_id: int) -> list[tuple[str, str]]:
        """(CA name, key object id) of the CAs whose key is in this token."""
        rows = self._session.execute(
            select(CaRow.name, CaRow.token_key_id).where(CaRow.token_id == token_id)
        ).all()
        return [(name, key_id or "") for name, key_id in rows]

    def ca_certificates(self, token_id: int) -> list[tuple[str, str, bytes]]:
        """(CA name, key object id, CA certificate DER) of the CAs whose key is here."""
        rows = self._session.execute(
            select(CaRow.name, CaRow.token_key_id, CaRow.certificate_der).where(
                CaRow.token_id == token_id
            )
        ).all()
        return [(name, key_id or "", der) for name, key_id, der in rows]


def _token_aad(name: str) -> bytes:
    return b"certway/token-pin/" + name.encode()


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    id: int
    serial: str
    revoked_at: dt.datetime
    reason: str | None
    invalidity_date: dt.datetime | None


class CaRepository:
    """Local CAs, their inventory of issued certificates, revocations and latest CRL."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # CAs
    def add(self, row: CaRow) -> CaRow:
        self._session.add(row)
        self._session.flush()
        return row

    def by_name(self, name: str) -> CaRow | None:
        return self._session.scalars(select(CaRow).where(CaRow.name == name)).first()

    def by_id(self, ca_id: int) -> CaRow | None:
        return self._session.get(CaRow, ca_id)

    def all(self) -> Sequence[CaRow]:
        return self._session.scalars(select(CaRow).order_by(CaRow.id)).all()

    def counts(self) -> dict[int, tuple[int, int]]:
        """ca_id → (issued, revoked)."""
        issued: dict[int, int] = {
            ca_id: n
            for ca_id, n in self._session.execute(
                select(IssuedRow.ca_id, func.count()).group_by(IssuedRow.ca_id)
            ).all()
        }
        revoked: dict[int, int] = {
            ca_id: n
            for ca_id, n in self._session.execute(
                select(RevocationRow.ca_id, func.count()).group_by(RevocationRow.ca_id)
            ).all()
        }
        return {k: (issued.get(k, 0), revoked.get(k, 0)) for k in set(issued) | set(revoked)}

    def next_crl_number(self, ca_id: int) -> int:
        """Allocate the next CRL number; the UPDATE also takes the write lock first."""
        self._session.execute(
            update(CaRow).where(CaRow.id == ca_id).values(last_crl_number=CaRow.last_crl_number + 1)
        )
        number = self._session.scalar(select(CaRow.last_crl_number).where(CaRow.id == ca_id))
        assert number is not None
        return number

    # inventory
    def add_issued(self, row: IssuedRow) -> None:
        self.add_issued_many([row])

    def add_issued_many(self, rows: Sequence[IssuedRow]) -> None:
        """Insert inventory rows in one statement (no unit of work: issuance is a hot path)."""
        if rows:
            self._session.connection().execute(
                _ISSUED_INSERT, [column_values(IssuedRow, r) for r in rows]
            )

    def issued(self, ca_id: int, *, search: str | None = None) -> Sequence[IssuedRow]:
        query = select(IssuedRow).where(IssuedRow.ca_id == ca_id)
        if search:
            pattern = f"%{search}%"
            query = query.where(
                IssuedRow.subject.ilike(pattern)
                | IssuedRow.alt_names.ilike(pattern)
                | IssuedRow.serial.ilike(pattern)
            )
        return self._session.scalars(query.order_by(IssuedRow.id)).all()

    def issued_by_serial(self, ca_id: int, serial: str) -> IssuedRow | None:
        return self._session.scalars(
            select(IssuedRow).where(IssuedRow.ca_id == ca_id, IssuedRow.serial == serial)
        ).first()

    # revocations
    def revocation(self, ca_id: int, serial: str) -> RevocationRecord | None:
        row = self._session.scalars(
            select(RevocationRow).where(
                RevocationRow.ca_id == ca_id, RevocationRow.serial == serial
            )
        ).first()
        return _record(row) if row is not None else None

    def add_revocation(
        self,
        ca_id: int,
        serial: str,
        revoked_at: dt.datetime,
        reason: str | None,
        invalidity_date: dt.datetime | None,
    ) -> None:
        self._session.add(
            RevocationRow(
                ca_id=ca_id,
                serial=serial,
                revoked_at=revoked_at,
                reason=reason,
                invalidity_date=invalidity_date,
            )
        )
        self._session.flush()

    def add_revocations_bulk(
        self, ca_id: int, rows: Iterable[tuple[str, dt.datetime, str | None]]
    ) -> None:
        """Many revocations in one statement (imports and benchmarks)."""
        self._session.execute(
            insert(RevocationRow),
            [{"ca_id": ca_id, "serial": s, "revoked_at": at, "reason": r} for s, at, r in rows],
        )

    def revocations(self, ca_id: int, *, after_id: int = 0) -> list[RevocationRecord]:
        rows = self._session.execute(
            select(
                RevocationRow.id,
                RevocationRow.serial,
                RevocationRow.revoked_at,
                RevocationRow.reason,
                RevocationRow.invalidity_date,
            )
            .where(RevocationRow.ca_id == ca_id, RevocationRow.id > after_id)
            .order_by(RevocationRow.id)
        ).all()
        return [RevocationRecord(*row) for row in rows]

    def last_revocation_id(self) -> int:
        """The id of the newest revocation of any CA (ids only grow: revocations are
        append-only), 0 when there is none."""
        return int(self._session.scalar(select(func.max(RevocationRow.id))) or 0)

    def revocations_by_serial(self, ca_id: int) -> dict[str, RevocationRecord]:
        return {r.serial: r for r in self.revocations(ca_id)}

    # CRLs
    def latest_crl(self, ca_id: int) -> CrlRow | None:
        return self._session.get(CrlRow, ca_id)

    def save_crl(
        self,
        ca_id: int,
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
        covers_revocation_id: int,
        crl_der: bytes,
        entries: int,
    ) -> None:
        row = self._session.get(CrlRow, ca_id)
        if row is None:
            row = CrlRow(ca_id=ca_id)
            self._session.add(row)
        row.number = number
        row.this_update = this_update
        row.next_update = next_update
        row.covers_revocation_id = covers_revocation_id
        row.crl_der = crl_der
        row.entries = entries


def _record(row: RevocationRow) -> RevocationRecord:
    return RevocationRecord(row.id, row.serial, row.revoked_at, row.reason, row.invalidity_date)


class TrustRepository:
    """The trusted CA list and its factory defaults."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> Sequence[TrustedCaRow]:
        return self._session.scalars(select(TrustedCaRow).order_by(TrustedCaRow.added_at)).all()

    def get(self, fingerprint: str) -> TrustedCaRow | None:
        return self._session.get(TrustedCaRow, fingerprint)

    def add(self, row: TrustedCaRow) -> None:
        self._session.add(row)
        self._session.flush()

    def remove(self, fingerprint: str) -> None:
        row = self._session.get(TrustedCaRow, fingerprint)
        if row is not None:
            self._session.delete(row)
            self._session.flush()

    def clear(self) -> None:
        self._session.execute(delete(TrustedCaRow))

    def defaults(self) -> Sequence[TrustDefaultRow]:
        return self._session.scalars(select(TrustDefaultRow)).all()

    def add_default(self, fingerprint: str, der: bytes) -> None:
        if self._session.get(TrustDefaultRow, fingerprint) is None:
            self._session.add(TrustDefaultRow(fingerprint=fingerprint, certificate_der=der))
            self._session.flush()


class HeldCrlRepository:
    """CRLs obtained from outside (manual, embedded, URL sources)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self, kind: str | None = None, *, with_der: bool = False) -> Sequence[HeldCrlRow]:
        """Held CRLs; ``with_der`` loads their (deferred) DER in the same query."""
        query = select(HeldCrlRow).order_by(HeldCrlRow.id)
        if with_der:
            query = query.options(undefer(HeldCrlRow.crl_der))
        if kind is not None:
            query = query.where(HeldCrlRow.kind == kind)
        return self._session.scalars(query).all()

    def put(self, row: HeldCrlRow) -> None:
        """Insert, replacing the CRL of the same kind, source, issuer and scope (a delta CRL
        replaces the previous delta, not its complete CRL)."""
        self._session.execute(
            delete(HeldCrlRow).where(
                HeldCrlRow.kind == row.kind,
                HeldCrlRow.source == row.source,
                HeldCrlRow.issuer_key == row.issuer_key,
                HeldCrlRow.scope == row.scope,
            )
        )
        self._session.add(row)
        self._session.flush()

    def remove_kind(self, kind: str, source: str | None = None) -> int:
        query = delete(HeldCrlRow).where(HeldCrlRow.kind == kind)
        if source is not None:
            query = query.where(HeldCrlRow.source == source)
        result = self._session.execute(query)
        return int(getattr(result, "rowcount", 0) or 0)

    # sources
    def sources(self) -> Sequence[CrlSourceRow]:
        return self._session.scalars(select(CrlSourceRow).order_by(CrlSourceRow.position)).all()

    def source(self, url: str) -> CrlSourceRow | None:
        return self._session.get(CrlSourceRow, url)

    def set_sources(self, urls: Sequence[str]) -> None:
        """Keep the status of URLs that stay; drop the others and their CRLs."""
        existing = {row.url: row for row in self.sources()}
        for url, row in existing.items():
            if url not in urls:
                self._session.delete(row)
                self.remove_kind("url", url)
        for position, url in enumerate(urls):
            kept = existing.get(url)
            if kept is None:
                self._session.add(CrlSourceRow(url=url, position=position))
            else:
                kept.position = position
        self._session.flush()


class SettingsRepository:
    """JSON settings (change counters are topics: certway.store.topics): cluster-wide,
    except ``PER_PEER_SETTINGS`` (this peer's own)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._node_id = node_id_of(session)

    def _scope(self, key: str) -> int:
        return self._node_id if key in PER_PEER_SETTINGS else 0

    def get(self, key: str) -> Any:
        row = self._session.get(SettingRow, (self._scope(key), key))
        return None if row is None else json.loads(row.value)

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)
        scope = self._scope(key)
        row = self._session.get(SettingRow, (scope, key))
        if row is not None:
            row.value = text
            self._session.flush()
            return
        # An upsert: another transaction may create the same key meanwhile.
        dialect = postgresql if self._session.get_bind().dialect.name == "postgresql" else sqlite
        self._session.execute(
            dialect.insert(SettingRow)
            .values(node_id=scope, key=key, value=text)
            .on_conflict_do_update(
                index_elements=[SettingRow.node_id, SettingRow.key], set_={"value": text}
            )
        )


class SlotRepository:
    """Certificate slots (server, client, domains), their versions and pending CSRs: each
    peer has its own (the slots of the peer the session runs on)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._node_id = node_id_of(session)

    def get(self, kind: str, name: str = "") -> CertSlotRow | None:
        return self._session.scalars(
            select(CertSlotRow).where(
                CertSlotRow.node_id == self._node_id,
                CertSlotRow.kind == kind,
                CertSlotRow.name == name,
            )
        ).first()

    def get_or_create(self, kind: str, name: str, at: dt.datetime) -> CertSlotRow:
        row = self.get(kind, name)
        if row is None:
            row = CertSlotRow(node_id=self._node_id, kind=kind, name=name, created_at=at)
            self._session.add(row)
            self._session.flush()
        return row

    def of_kind(self, kind: str) -> Sequence[CertSlotRow]:
        return self._session.scalars(
            select(CertSlotRow)
            .where(CertSlotRow.node_id == self._node_id, CertSlotRow.kind == kind)
            .order_by(CertSlotRow.name)
        ).all()

    def delete(self, slot: CertSlotRow) -> None:
        self._session.execute(delete(CertVersionRow).where(CertVersionRow.slot_id == slot.id))
        self._session.delete(slot)
        self._session.flush()

    def version(self, version_id: int) -> CertVersionRow | None:
        return self._session.get(CertVersionRow, version_id)

    def version_number(self, slot: CertSlotRow, number: int) -> CertVersionRow | None:
        return self._session.scalars(
            select(CertVersionRow).where(
                CertVersionRow.slot_id == slot.id, CertVersionRow.version == number
            )
        ).first()

    def versions(self, slot: CertSlotRow) -> Sequence[CertVersionRow]:
        return self._session.scalars(
            select(CertVersionRow)
            .where(CertVersionRow.slot_id == slot.id)
            .order_by(CertVersionRow.version)
        ).all()

    def add_version(self, slot: CertSlotRow, row: CertVersionRow) -> CertVersionRow:
        """Append a version and make it the active one."""
        latest = self._session.scalar(
            select(func.max(CertVersionRow.version)).where(CertVersionRow.slot_id == slot.id)
        )
        row.slot_id = slot.id
        row.version = (latest or 0) + 1
        self._session.add(row)
        self._session.flush()
        slot.active_version_id = row.id
        self._session.flush()
        return row

    def active_versions(self, kind: str) -> list[tuple[CertSlotRow, CertVersionRow]]:
        rows = self._session.execute(
            select(CertSlotRow, CertVersionRow)
            .join(CertVersionRow, CertVersionRow.id == CertSlotRow.active_version_id)
            .where(CertSlotRow.node_id == self._node_id, CertSlotRow.kind == kind)
        ).all()
        return [(slot, version) for slot, version in rows]


class AdminRepository:
    """Local administrator accounts (the password hash is argon2id, made by the service)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> Sequence[AdminAccountRow]:
        return self._session.scalars(select(AdminAccountRow).order_by(AdminAccountRow.name)).all()

    def get(self, name: str) -> AdminAccountRow | None:
        return self._session.get(AdminAccountRow, name)

    def add(self, name: str, access: str, password_hash: str, at: dt.datetime) -> None:
        self._session.add(
            AdminAccountRow(
                name=name, access=access, password_hash=password_hash, created_at=at, updated_at=at
            )
        )
        self._session.flush()

    def another_with_access(self, access: str, name: str) -> bool:
        """Whether an account other than ``name`` has ``access``."""
        found = self._session.scalars(
            select(AdminAccountRow.name)
            .where(AdminAccountRow.access == access, AdminAccountRow.name != name)
            .limit(1)
        ).first()
        return found is not None

    def delete(self, row: AdminAccountRow) -> None:
        self._session.delete(row)
        self._session.flush()


class AlarmStateRepository:
    """When each raised alarm of this peer was first seen (rows keyed by the alarm's state
    key)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._node_id = node_id_of(session)

    def first_seen(self) -> dict[str, dt.datetime]:
        return {
            row.alarm_id: row.since
            for row in self._session.scalars(
                select(AlarmStateRow).where(AlarmStateRow.node_id == self._node_id)
            )
        }

    def clear(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        if wanted:
            self._session.execute(
                delete(AlarmStateRow).where(
                    AlarmStateRow.node_id == self._node_id, AlarmStateRow.alarm_id.in_(wanted)
                )
            )

    def record(self, key: str, since: dt.datetime) -> None:
        """Insert-or-ignore: another process may record the same alarm at once (its time
        then stays)."""
        dialect = postgresql if self._session.get_bind().dialect.name == "postgresql" else sqlite
        self._session.execute(
            dialect.insert(AlarmStateRow)
            .values(node_id=self._node_id, alarm_id=key, since=since)
            .on_conflict_do_nothing(index_elements=[AlarmStateRow.node_id, AlarmStateRow.alarm_id])
        )


class AuditRepository:
    """The audit log: rows are added, their outcome and details updated, never deleted."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, row: AuditRow) -> int:
        """Insert ``row`` (one statement, no unit of work: every change writes one); its id."""
        result = self._session.connection().execute(_AUDIT_INSERT, column_values(AuditRow, row))
        (row_id,) = result.inserted_primary_key or (None,)
        assert row_id is not None
        return int(row_id)

    def get(self, row_id: int) -> AuditRow | None:
        return self._session.get(AuditRow, row_id)

    def after(self, row_id: int, limit: int) -> list[AuditRow]:
        """At most ``limit`` rows with an id above ``row_id``, oldest first."""
        query = select(AuditRow).where(AuditRow.id > row_id).order_by(AuditRow.id).limit(limit)
        return list(self._session.scalars(query).all())

    def last_id(self) -> int:
        return int(self._session.scalar(select(func.max(AuditRow.id))) or 0)

    def newest(self, *, since: dt.datetime | None, limit: int) -> list[AuditRow]:
        """At most ``limit`` rows (from ``since`` on), the newest ones, oldest first."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        return list(reversed(self._session.scalars(query).all()))


def _deleted(session: Session, statement: Any) -> int:
    """Run a DELETE; how many rows it removed."""
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


class PeerRepository:
    """The peers of the cluster."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> Sequence[PeerRow]:
        return self._session.scalars(select(PeerRow).order_by(PeerRow.id)).all()

    def get(self, node_id: int, *, for_update: bool = False) -> PeerRow | None:
        """The peer; ``for_update`` locks its row until the transaction ends (its heartbeat
        then waits)."""
        if for_update:
            return self._session.scalars(
                select(PeerRow).where(PeerRow.id == node_id).with_for_update()
            ).first()
        return self._session.get(PeerRow, node_id)

    def by_fqdn(self, fqdn: str) -> PeerRow | None:
        return self._session.scalars(select(PeerRow).where(PeerRow.fqdn == fqdn)).first()

    def add(self, fqdn: str, at: dt.datetime) -> int:
        row = PeerRow(fqdn=fqdn, joined_at=at)
        self._session.add(row)
        self._session.flush()
        return row.id

    def set_fqdn(self, node_id: int, fqdn: str) -> None:
        self._session.execute(update(PeerRow).where(PeerRow.id == node_id).values(fqdn=fqdn))

    def seen(
        self,
        node_id: int,
        at: dt.datetime,
        *,
        fqdn: str | None,
        server_cert_not_after: dt.datetime | None,
    ) -> None:
        """Record that the peer is alive (and its FQDN and server certificate expiry now)."""
        values: dict[str, Any] = {"last_seen": at, "server_cert_not_after": server_cert_not_after}
        if fqdn is not None:
            values["fqdn"] = fqdn
        self._session.execute(update(PeerRow).where(PeerRow.id == node_id).values(**values))

    def set_admin_address(self, node_id: int, address: str | None) -> None:
        self._session.execute(
            update(PeerRow).where(PeerRow.id == node_id).values(admin_address=address)
        )

    def key_exported(self, key_check: str, at: dt.datetime) -> None:
        """Note when the cluster key was last exported (an embedded node gets its key check
        value recorded then)."""
        row = self._session.get(ClusterRow, 1)
        if row is None:
            row = ClusterRow(id=1, key_check=key_check, created_at=at)
            self._session.add(row)
        row.key_exported_at = at
        self._session.flush()

    def set_tls_result(self, node_id: int, result: str, at: dt.datetime) -> None:
        self._session.execute(
            update(PeerRow)
            .where(PeerRow.id == node_id)
            .values(tls_result=result, tls_checked_at=at)
        )

    def remove(self, node_id: int) -> dict[str, int]:
        """Delete a peer and everything scoped to it: its settings, alarm states, certificate
        slots (server, client, domains; their pending CSRs) with every certificate version
        they held, the private keys only those used, and its row. The number of rows deleted
        per table. The caller's transaction makes it all or nothing."""
        slot_ids = select(CertSlotRow.id).where(CertSlotRow.node_id == node_id)
        keys = set(
            self._session.scalars(
                select(CertVersionRow.key_id).where(CertVersionRow.slot_id.in_(slot_ids))
            )
        )
        keys |= {
            k
            for k in self._session.scalars(
                select(CertSlotRow.pending_key_id).where(CertSlotRow.node_id == node_id)
            )
            if k is not None
        }
        counts = {
            "cert_versions": _deleted(
                self._session, delete(CertVersionRow).where(CertVersionRow.slot_id.in_(slot_ids))
            ),
            "cert_slots": _deleted(
                self._session, delete(CertSlotRow).where(CertSlotRow.node_id == node_id)
            ),
            "settings": _deleted(
                self._session, delete(SettingRow).where(SettingRow.node_id == node_id)
            ),
            "alarm_state": _deleted(
                self._session, delete(AlarmStateRow).where(AlarmStateRow.node_id == node_id)
            ),
        }
        # Keys still used elsewhere (another slot or version, a CA) stay.
        still_used = set(self._session.scalars(select(CertVersionRow.key_id)))
        still_used |= set(self._session.scalars(select(CertSlotRow.pending_key_id)))
        still_used |= set(self._session.scalars(select(CaRow.key_id)))
        orphans = sorted(keys - still_used)
        counts["private_keys"] = (
            _deleted(self._session, delete(PrivateKeyRow).where(PrivateKeyRow.id.in_(orphans)))
            if orphans
            else 0
        )
        counts["peers"] = _deleted(self._session, delete(PeerRow).where(PeerRow.id == node_id))
        return counts


class ApiTokenRepository:
    """API tokens (the row keeps the SHA-256 of the token's secret, never the token)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> Sequence[ApiTokenRow]:
        return self._session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name)).all()

    def by_name(self, name: str) -> ApiTokenRow | None:
        return self._session.scalars(select(ApiTokenRow).where(ApiTokenRow.name == name)).first()

    def by_key_id(self, key_id: str) -> ApiTokenRow | None:
        return self._session.scalars(
            select(ApiTokenRow).where(ApiTokenRow.key_id == key_id)
        ).first()

    def add(self, row: ApiTokenRow) -> None:
        self._session.add(row)
        self._session.flush()

    def delete(self, row: ApiTokenRow) -> None:
        self._session.delete(row)
        self._session.flush()


# Built once: issuance and every audited change run them, and building costs more than running.
_ISSUED_INSERT = insert(cast(Table, IssuedRow.__table__))
_AUDIT_INSERT = insert(cast(Table, AuditRow.__table__))


def column_values(model: Any, row: Any) -> dict[str, Any]:
    """The column values of a new (not added) ORM row for an insert statement: an unset
    column gets its scalar default as the ORM would give it, an unset primary key is left to
    the database; every row of a model gets the same keys (one executemany)."""
    values: dict[str, Any] = {}
    for column in model.__table__.columns:
        value = getattr(row, column.key)
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        if value is not None or not column.primary_key:
            values[column.key] = value
    return values
