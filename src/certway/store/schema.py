"""The database schema (SQLAlchemy 2 declarative). Changes go through Alembic migrations."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "CaRow", "CrlRow", "IssuedRow", "PrivateKeyRow", "RevocationRow", "TokenRow"]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class PrivateKeyRow(Base):
    """A private key, sealed by the key vault. The plaintext never touches the database."""

    __tablename__ = "private_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(32))
    public_sha256: Mapped[str] = mapped_column(String(64), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TokenRow(Base):
    """A PKCS#11 token certway may keep CA keys in; its PIN sealed by the key vault."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    module: Mapped[str] = mapped_column(Text)
    token_label: Mapped[str] = mapped_column(String(32))
    sealed_pin: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CaRow(Base):
    __tablename__ = "cas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # root | intermediate | imported
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"), nullable=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The key: sealed in private_keys, or (token-backed CA) an object in a PKCS#11 token.
    key_id: Mapped[str | None] = mapped_column(ForeignKey("private_keys.id"), nullable=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)
    token_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # CKA_ID, hex
    subject: Mapped[str] = mapped_column(Text)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    crl_urls: Mapped[str] = mapped_column(Text, default="")  # newline separated
    ocsp_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    crl_days: Mapped[int] = mapped_column(Integer, default=7)
    last_crl_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class IssuedRow(Base):
    """The inventory of certificates a local CA issued."""

    __tablename__ = "issued_certificates"
    __table_args__ = (UniqueConstraint("ca_id", "serial"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), index=True)
    serial: Mapped[str] = mapped_column(String(42))  # upper-case hex, no leading zeros
    subject: Mapped[str] = mapped_column(Text)
    alt_names: Mapped[str] = mapped_column(Text, default="")
    profile: Mapped[str] = mapped_column(String(16))
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The ACME account (its id in acme_accounts) that ordered it, for ACME issuance.
    acme_account: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RevocationRow(Base):
    """Append-only revocation records; the CRL is built from these."""

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("ca_id", "serial"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), index=True)
    serial: Mapped[str] = mapped_column(String(42))
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CrlRow(Base):
    """The latest CRL of each local CA, with the last revocation id it covers."""

    __tablename__ = "crls"
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    covers_revocation_id: Mapped[int] = mapped_column(Integer)
    crl_der: Mapped[bytes] = mapped_column(LargeBinary)
    entries: Mapped[int] = mapped_column(Integer, default=0)


class TrustedCaRow(Base):
    """The trusted CA list."""

    __tablename__ = "trusted_cas"
    fingerprint: Mapped[str] = mapped_column(String(95), primary_key=True)  # SHA-256, colons
    subject: Mapped[str] = mapped_column(Text)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    origin: Mapped[str] = mapped_column(String(16))  # user | factory


class TrustDefaultRow(Base):
    """The factory trusted CA list that 'reset to default' restores."""

    __tablename__ = "trust_defaults"
    fingerprint: Mapped[str] = mapped_column(String(95), primary_key=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)


class HeldCrlRow(Base):
    """CRLs from outside: manual upload, embedded in CA files, URL sources."""

    __tablename__ = "held_crls"
    __table_args__ = (
        UniqueConstraint("kind", "source", "issuer_key", "scope", name="uq_held_crls_scope"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # manual | embedded | url
    source: Mapped[str] = mapped_column(Text)
    issuer_key: Mapped[str] = mapped_column(String(64), index=True)  # SHA-256 of issuer SPKI
    issuer: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(64), default="complete", server_default="complete")
    """complete | delta, plus '/<digest>' of the issuing distribution point when it has one:
    CRLs of one source and issuer are replaced only by CRLs of the same scope."""
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    entries: Mapped[int] = mapped_column(Integer)
    # Deferred: a CRL can be tens of MB and most readers (listings, alarms) need only the
    # columns around it.
    crl_der: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CrlSourceRow(Base):
    """An automatic CRL update URL and its status."""

    __tablename__ = "crl_sources"
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    last_attempt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    crl_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    next_update: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SettingRow(Base):
    """Node settings as JSON values.

    ``node_id`` 0: a cluster-wide setting; a peer's id: a setting of that peer only."""

    __tablename__ = "settings"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ChangeTopicRow(Base):
    """One counter per change topic (certway.store.topics.Topic): moved by every write
    transaction that changes what the topic covers; caches and listeners compare them."""

    __tablename__ = "change_topics"
    topic: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class CertSlotRow(Base):
    """A place for an active certificate: the server, the client identity, or a domain (SNI).

    The pending CSR of the slot lives here too; its key is sealed in private_keys.
    """

    __tablename__ = "cert_slots"
    __table_args__ = (UniqueConstraint("node_id", "kind", "name", name="uq_cert_slots_node"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # its peer
    kind: Mapped[str] = mapped_column(String(16))  # server | client | domain
    name: Mapped[str] = mapped_column(String(253), default="")
    active_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pending_csr_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pending_key_id: Mapped[str | None] = mapped_column(ForeignKey("private_keys.id"), nullable=True)
    pending_form: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CertVersionRow(Base):
    """Every certificate a slot ever had; the active one is the slot's active_version_id."""

    __tablename__ = "cert_versions"
    __table_args__ = (UniqueConstraint("slot_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("cert_slots.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str] = mapped_column(ForeignKey("private_keys.id"))
    subject: Mapped[str] = mapped_column(Text)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(64))
    warnings: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """The audit log: every change, who/what/when/from where/outcome; never secrets."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    via: Mapped[str] = mapped_column(String(16))  # cli | api | ui | acme | system
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    detail: Mapped[str] = mapped_column(Text, default="")


class AlarmStateRow(Base):
    """When each currently raised alarm was first seen; cleared alarms are deleted."""

    __tablename__ = "alarm_state"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)  # the peer
    alarm_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AdminAccountRow(Base):
    """Local administrator accounts; passwords hashed with argon2id (never stored in clear)."""

    __tablename__ = "admin_accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    access: Mapped[str] = mapped_column(String(16))  # read-write | read-only
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PeerRow(Base):
    """A peer of the cluster (an embedded node is peer 1 of a cluster of one)."""

    __tablename__ = "peers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fqdn: Mapped[str] = mapped_column(String(253))
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    server_cert_not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # How the other peers last verified this peer's certificate (filled by the cluster's
    # mutual-TLS health checks).
    tls_result: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where the peer's admin listener (and its health endpoint) answers: HOST:PORT, set by the
    # peer's ``certway serve`` when it starts.
    admin_address: Mapped[str | None] = mapped_column(String(300), nullable=True)


class ClusterRow(Base):
    """One row: the check value of the cluster key (HMAC of a constant, never the key)."""

    __tablename__ = "cluster"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_check: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    key_exported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiTokenRow(Base):
    """API tokens for automation (``Authorization: Bearer``). Only the SHA-256 of the token's
    secret part is kept: the token itself is shown once, when it is created."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)  # the token's public part
    secret_sha256: Mapped[str] = mapped_column(String(64))
    access: Mapped[str] = mapped_column(String(16))  # read-write | read-only
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AcmeAccountRow(Base):
    """An ACME account of a local CA's ACME server: its public key (JWK) and status."""

    __tablename__ = "acme_accounts"
    __table_args__ = (UniqueConstraint("ca_id", "thumbprint"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), index=True)
    thumbprint: Mapped[str] = mapped_column(String(64))  # RFC 7638, base64url of SHA-256
    jwk: Mapped[str] = mapped_column(Text)  # the public key, JSON
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated
    contact: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of URLs
    eab_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AcmeEabKeyRow(Base):
    """An external account binding key (HMAC, sealed like a private key); used once."""

    __tablename__ = "acme_eab_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), index=True)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    account_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
