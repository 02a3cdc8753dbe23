"""The node's own certificates (SC1-SC6, DC1, CA5): server certificate, client certificate
and per-domain (SNI) certificates, each a *slot* with numbered versions and at most one
pending CSR.

Activation is one database transaction (new version + active pointer + counter bump), so a
crash leaves either the old or the new certificate active. Listeners watch the
``version.identity`` counter and rebuild their TLS contexts when it moves (S7).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.clock import Clock
from certway.errors import Conflict, DecodeError, NotFound, PolicyViolation
from certway.pki.checks import check_node_certificate
from certway.pki.convert import chain_order
from certway.pki.csr import CsrForm, SubjectFields, build_csr, plan_names
from certway.pki.decode import (
    Decoded,
    check_bundle_size,
    fingerprint,
    format_name,
    load_certificates,
)
from certway.pki.decode import Kind as DecodedKind
from certway.pki.keys import PrivateKey, generate_key, load_private_key
from certway.pki.names import check_dns_name, common_name, san_text
from certway.services.audit import Audit, audited
from certway.services.local_ca import LocalCA
from certway.services.node_settings import IDENTITY_VERSION, NodeSettings
from certway.services.trusted_cas import TrustedCAs
from certway.store.db import Store
from certway.store.repositories import KeyRepository, SettingsRepository, SlotRepository
from certway.store.schema import CertSlotRow, CertVersionRow
from certway.trust.identity import certificate_text
from certway.trust.validate import ValidationOptions, validate

__all__ = [
    "TEMPORARY_CA",
    "ActiveIdentity",
    "CsrOptions",
    "DomainInfo",
    "Identities",
    "IdentityInfo",
    "Kind",
    "PendingCsrInfo",
    "UploadResult",
    "VersionInfo",
]

Kind = Literal["server", "client", "domain"]
TEMPORARY_CA = "temporary-ca"
_TEMP_CA_KEY = "factory.temporary_ca"
FACTORY_DAYS = 365
"""The factory server certificate exists to be replaced: it lives a year at most."""


def _pem(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _alt_names(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [san_text(n) for n in san]


def _slot_label(kind: str, name: str) -> str:
    return f"domain {name}" if kind == "domain" else f"{kind} certificate"


@dataclass(frozen=True)
class ActiveIdentity:
    """What a TLS listener presents: certificate, chain (no root) and the sealed key's id."""

    kind: str
    name: str
    version: int
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_id: str = field(repr=False)


@dataclass(frozen=True)
class IdentityInfo:
    kind: str
    name: str
    version: int
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    alt_names: list[str]
    source: str
    warnings: list[str]
    temporary: bool
    chain: list[str]
    pem: str
    text: str

    def as_dict(self, *, with_text: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name or None,
            "version": self.version,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256_fingerprint": self.fingerprint,
            "alt_names": self.alt_names,
            "source": self.source,
            "warnings": self.warnings,
            "temporary": self.temporary,
            "chain": self.chain,
            "pem": self.pem,
        }
        if with_text:
            data["text"] = self.text
        return data


@dataclass(frozen=True)
class PendingCsrInfo:
    kind: str
    name: str
    created_at: dt.datetime
    common_name: str
    alt_names: list[str]
    key: str
    pem: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name or None,
            "created_at": self.created_at.isoformat(),
            "common_name": self.common_name,
            "alt_names": self.alt_names,
            "key": self.key,
            "pem": self.pem,
        }


@dataclass(frozen=True)
class UploadResult:
    info: IdentityInfo
    warnings: list[str]


@dataclass(frozen=True)
class VersionInfo:
    version: int
    subject: str
    not_after: dt.datetime
    source: str
    created_at: dt.datetime
    active: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "subject": self.subject,
            "not_after": self.not_after.isoformat(),
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "active": self.active,
        }


@dataclass(frozen=True)
class DomainInfo:
    name: str
    has_certificate: bool
    not_after: dt.datetime | None
    subject: str | None
    pending_csr: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "has_certificate": self.has_certificate,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "subject": self.subject,
            "pending_csr": self.pending_csr,
        }


@dataclass(frozen=True, slots=True)
class CsrOptions:
    """The SC2 form: which names go where, key and digest, subject fields."""

    cn: str = "node"  # node | cluster (server) ; ignored for domains
    alt_names: str = "none"  # none | cluster
    add_san: tuple[str, ...] = ()
    ucm_domains: tuple[str, ...] = ()
    ucm_domain_format: str = "dns"
    xmpp_domains: tuple[str, ...] = ()
    chat_aliases: tuple[str, ...] = ()
    phone_security_profiles: tuple[str, ...] = ()
    key_type: str = "rsa:4096"
    digest: str = "sha256"
    subject: SubjectFields = field(default_factory=SubjectFields)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cn": self.cn,
            "alt_names": self.alt_names,
            "add_san": list(self.add_san),
            "ucm_domains": list(self.ucm_domains),
            "ucm_domain_format": self.ucm_domain_format,
            "xmpp_domains": list(self.xmpp_domains),
            "chat_aliases": list(self.chat_aliases),
            "phone_security_profiles": list(self.phone_security_profiles),
            "key_type": self.key_type,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class _SniMap:
    version: int
    server: ActiveIdentity | None
    domains: dict[str, ActiveIdentity]
    host_label: str


class Identities:
    """Server, client and domain certificates of this node."""

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
        self._sni: _SniMap | None = None
        self._lock = threading.Lock()

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

    def active(self, kind: Kind = "server", name: str = "") -> ActiveIdentity | None:
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

    def info(self, kind: Kind = "server", name: str = "") -> IdentityInfo:
        name = self._slot(kind, name)
        with self._store.reading() as session:
            repo = SlotRepository(session)
            found = self._active_row(repo, kind, name)
            fallback = False
            if found is None and kind == "client":
                found = self._active_row(repo, "server", "")
                fallback = True
            if found is None:
                raise NotFound(f"the {_slot_label(kind, name)} has no certificate yet")
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
            serial=format(cert.serial_number, "X"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint=fingerprint(cert),
            alt_names=_alt_names(cert),
            source=source,
            warnings=warnings,
            temporary=self.is_temporary(cert),
            chain=[format_name(c.subject) for c in identity.chain],
            pem=_pem([cert, *identity.chain]),
            text=certificate_text(cert),
        )

    def history(self, kind: Kind = "server", name: str = "") -> list[VersionInfo]:
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

    # -- temporary CA (CA5) -------------------------------------------------------------------
    def temporary_ca(self) -> x509.Certificate | None:
        with self._store.reading() as session:
            name = SettingsRepository(session).get(_TEMP_CA_KEY)
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

    def factory_setup(self) -> bool:
        """On first start: a temporary CA (trusted, in the factory list) and a server
        certificate from it for the node FQDN, localhost and 127.0.0.1. Idempotent."""
        if self.active("server") is not None:
            return False
        config = self._node.get()
        temp = self.temporary_ca()
        if temp is None:
            suffix = secrets.token_hex(4)
            name = TEMPORARY_CA if not self._ca_exists(TEMPORARY_CA) else f"{TEMPORARY_CA}-{suffix}"
            info = self._local_ca.create_root(
                name,
                f"/O=certway/OU=Temporary CA/CN=certway temporary CA {suffix}",
                key_type="ec:p256",
                days=3650,
            )
            temp = self._local_ca.certificate(info.name)
            with self._store.transaction() as session:
                SettingsRepository(session).set(_TEMP_CA_KEY, info.name)
        self._trusted.add_factory(temp)
        key = generate_key("ec:p256")
        names: list[x509.GeneralName] = [
            x509.DNSName(config.fqdn),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        with self._store.reading() as session:
            ca_name = SettingsRepository(session).get(_TEMP_CA_KEY)
        assert isinstance(ca_name, str)
        issued = self._local_ca.issue_certificate(
            ca_name,
            key.public_key(),
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, config.fqdn)]),
            alt_names=names,
            days=FACTORY_DAYS,
        )
        self._activate("server", "", issued.certificate, issued.chain, key, None, "factory", [])
        return True

    def _ca_exists(self, name: str) -> bool:
        return any(c.name == name for c in self._local_ca.cas())

    # -- CSRs (SC2, SC3) ----------------------------------------------------------------------
    def _form(self, kind: str, name: str, options: CsrOptions) -> CsrForm:
        config = self._node.get()
        if kind == "domain":
            common = name
            extra = (f"{config.host_label}.{name}", *options.add_san)
        else:
            if options.cn not in ("node", "cluster"):
                raise PolicyViolation("csr-cn", "--cn must be 'node' or 'cluster'")
            if options.cn == "cluster" and not config.cluster_fqdn:
                raise PolicyViolation(
                    "csr-cn",
                    "common name 'cluster' needs a cluster FQDN: set it with 'certway node set "
                    "--cluster-fqdn'",
                )
            common = config.fqdn
            if options.cn == "cluster" and config.cluster_fqdn:
                common = config.cluster_fqdn
            extra = options.add_san
        if options.alt_names not in ("none", "cluster"):
            raise PolicyViolation("csr-alt-names", "--alt-names must be 'none' or 'cluster'")
        cluster = options.alt_names == "cluster"
        return CsrForm(
            common_name=common,
            role=config.role,  # type: ignore[arg-type]
            cluster_fqdn=config.cluster_fqdn if cluster else None,
            peers=config.peers if cluster else (),
            include_cluster_names=cluster,
            additional_names=tuple(extra),
            ucm_domains=options.ucm_domains,
            ucm_domain_format=options.ucm_domain_format,  # type: ignore[arg-type]
            xmpp_domains=options.xmpp_domains,
            chat_aliases=options.chat_aliases,
            phone_security_profiles=options.phone_security_profiles,
            subject=options.subject,
        )

    def preview(self, kind: Kind, name: str, options: CsrOptions) -> list[str]:
        """'Alternative name as it will appear' for the form, without creating anything."""
        name = self._slot(kind, name)
        return plan_names(self._form(kind, name, options)).preview

    @audited("csr.generate", target=lambda kind, name="", *a, **k: _slot_label(kind, name))
    def generate_csr(self, kind: Kind, name: str, options: CsrOptions) -> PendingCsrInfo:
        """Create the slot's pending CSR; its key is sealed in the store and never leaves it."""
        if kind == "client":
            raise PolicyViolation(
                "csr-client",
                "a CSR is generated for the server or a domain; the client certificate is "
                "uploaded or copied from the server certificate",
            )
        name = self._slot(kind, name)
        form = self._form(kind, name, options)
        pending = self.pending_csr(kind, name)
        if pending is not None:
            raise Conflict(
                f"a CSR is already pending for the {_slot_label(kind, name)} (created "
                f"{pending.created_at:%Y-%m-%d %H:%M} UTC): discard it first"
            )
        key = generate_key(options.key_type)
        csr, _plan = build_csr(key, form, digest=options.digest)
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = SlotRepository(session)
            slot = repo.get_or_create(kind, name, now)
            if slot.pending_csr_der is not None:
                raise Conflict(f"a CSR is already pending for the {_slot_label(kind, name)}")
            keys = KeyRepository(session, self._store.vault)
            slot.pending_key_id = keys.put(key, now)
            slot.pending_csr_der = csr.public_bytes(serialization.Encoding.DER)
            slot.pending_form = json.dumps(options.as_dict())
            slot.pending_created_at = now
            self._audit.note(
                common_name=common_name(csr.subject) or "",
                alt_names=_alt_names(csr),
                key=keys.description(slot.pending_key_id),
            )
        result = self.pending_csr(kind, name)
        assert result is not None
        return result

    def pending_csr(self, kind: Kind, name: str = "") -> PendingCsrInfo | None:
        name = self._slot(kind, name)
        with self._store.reading() as session:
            slot = SlotRepository(session).get(kind, name)
            if slot is None or slot.pending_csr_der is None:
                return None
            assert slot.pending_key_id is not None and slot.pending_created_at is not None
            key = KeyRepository(session, self._store.vault).description(slot.pending_key_id)
            csr = x509.load_der_x509_csr(slot.pending_csr_der)
            created = slot.pending_created_at
        return PendingCsrInfo(
            kind=kind,
            name=name,
            created_at=created,
            common_name=common_name(csr.subject) or "",
            alt_names=_alt_names(csr),
            key=key,
            pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
            text=Decoded(DecodedKind.CSR, (csr,)).to_text(),
        )

    @audited("csr.discard", target=lambda kind, name="": _slot_label(kind, name))
    def discard_csr(self, kind: Kind, name: str = "") -> None:
        name = self._slot(kind, name)
        with self._store.transaction() as session:
            slot = SlotRepository(session).get(kind, name)
            if slot is None or slot.pending_csr_der is None:
                raise NotFound(f"no CSR is pending for the {_slot_label(kind, name)}")
            slot.pending_csr_der = None
            slot.pending_key_id = None
            slot.pending_form = None
            slot.pending_created_at = None

    # -- upload and activation (SC4, SC5, SC6) ------------------------------------------------
    @audited("certificate.upload", target=lambda kind, name="", *a, **k: _slot_label(kind, name))
    def upload(
        self,
        kind: Kind,
        name: str,
        cert_data: bytes,
        *,
        chain_data: bytes | None = None,
        key_data: bytes | None = None,
        passphrase: bytes | None = None,
    ) -> UploadResult:
        """Check and activate a certificate (PEM, DER or PKCS#7, with optional chain and key).

        The key is the pending CSR's when one is pending (uploading a key then is refused),
        else the uploaded key, else the active key when the certificate matches it.
        """
        name = self._slot(kind, name)
        try:
            certs = load_certificates(cert_data)
        except DecodeError as exc:
            raise DecodeError(f"not a certificate: {exc}") from None
        chain_certs = load_certificates(chain_data) if chain_data else []
        check_bundle_size(len(certs) + len(chain_certs))
        ordered = chain_order(certs)
        leaf = ordered[0]
        extra = ordered[1:] + chain_certs
        pending_key_id: str | None = None
        with self._store.reading() as session:
            slot = SlotRepository(session).get(kind, name)
            keys = KeyRepository(session, self._store.vault)
            if slot is not None and slot.pending_csr_der is not None:
                if key_data is not None:
                    raise PolicyViolation(
                        "csr-pending",
                        "a CSR is pending: its key is used automatically, so a key cannot be "
                        "uploaded; discard the CSR first to use another key",
                    )
                assert slot.pending_key_id is not None
                pending_key_id = slot.pending_key_id
                key = keys.get(pending_key_id)
            elif key_data is not None:
                key = load_private_key(key_data, passphrase)
            else:
                current = self._active_row(SlotRepository(session), kind, name)
                if current is None:
                    raise PolicyViolation(
                        "no-key",
                        "no private key for this certificate: generate a CSR first, or upload "
                        "the key with the certificate",
                    )
                key = keys.get(current[1].key_id)
        now = self._clock.now()
        need_client_auth = kind == "client" or self._node.mutual_tls_in_use()
        findings = check_node_certificate(
            leaf,
            key,
            at=now,
            require_client_auth=need_client_auth,
            require_server_auth=kind != "client",
        )
        if kind == "client":
            _require_client_auth(leaf)
        chain, chain_warning = self._chain(leaf, extra, now)
        warnings = [f.message for f in findings]
        if chain_warning:
            warnings.append(chain_warning)
        self._audit.note(
            subject=format_name(leaf.subject),
            sha256_fingerprint=fingerprint(leaf),
            warnings=warnings,
        )
        self._activate(kind, name, leaf, chain, key, pending_key_id, "upload", warnings)
        return UploadResult(self.info(kind, name), warnings)

    def _chain(
        self, leaf: x509.Certificate, extra: list[x509.Certificate], at: dt.datetime
    ) -> tuple[tuple[x509.Certificate, ...], str | None]:
        """Intermediates that lead to a trusted CA (SC5), from the bundle or the trusted list."""
        snapshot = self._trusted.snapshot()
        pool = [*extra, *snapshot.certificates]
        result = validate(
            leaf,
            pool,
            trust=snapshot,
            at=max(at, leaf.not_valid_before_utc),
            options=ValidationOptions(check_eku=False),
        )
        if result.valid:
            return _served_chain(list(result.chain[1:]), pool), None
        given = tuple(c for c in extra if c.subject != c.issuer)
        return given, (
            "the chain does not lead to a CA in the trusted CA list "
            f"({result.reason}): peers that trust only that list will refuse it"
        )

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
                    chain_pem=_pem(chain),
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

    @audited(
        "certificate.restore",
        target=lambda kind, name, version: f"{_slot_label(kind, name)} version {version}",
    )
    def restore(self, kind: Kind, name: str, version: int) -> IdentityInfo:
        """Make an earlier version active again (as a new version, so listeners reload)."""
        name = self._slot(kind, name)
        if not 1 <= version < 2**31:
            raise NotFound(f"the {_slot_label(kind, name)} has no version {version}")
        with self._store.reading() as session:
            repo = SlotRepository(session)
            slot = repo.get(kind, name)
            old = repo.version_number(slot, version) if slot is not None else None
            if slot is None or old is None:
                raise NotFound(f"the {_slot_label(kind, name)} has no version {version}")
            if old.id == slot.active_version_id:
                raise Conflict(f"version {version} is already active")
            identity = self._identity(slot, old)
        if identity.certificate.not_valid_after_utc <= self._clock.now():
            raise PolicyViolation(
                "expired",
                f"version {version} expired on "
                f"{identity.certificate.not_valid_after_utc:%Y-%m-%d}: it cannot be restored",
            )
        self._activate_existing(kind, name, old, f"restore of version {version}")
        return self.info(kind, name)

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

    @audited("client-cert.copy-server", target=lambda: "client certificate")
    def copy_server_to_client(self) -> IdentityInfo:
        """Use the server certificate as the client certificate (SC6); needs clientAuth."""
        with self._store.reading() as session:
            found = self._active_row(SlotRepository(session), "server", "")
        if found is None:
            raise NotFound("the server certificate has no certificate yet")
        _require_client_auth(x509.load_der_x509_certificate(found[1].certificate_der))
        self._activate_existing("client", "", found[1], "copy of server certificate")
        return self.info("client")

    # -- domains (DC1) ------------------------------------------------------------------------
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
                raise NotFound(f"no domain '{name}': add it with 'certway domain add {name}'")
        return domain

    @audited("domain.add")
    def add_domain(self, name: str) -> DomainInfo:
        domain = check_dns_name(name, what="domain")
        if "." not in domain:
            raise PolicyViolation("domain", f"'{name}' is not a domain: use the form example.com")
        with self._store.transaction() as session:
            repo = SlotRepository(session)
            if repo.get("domain", domain) is not None:
                raise Conflict(f"domain '{domain}' already exists")
            repo.get_or_create("domain", domain, self._clock.now())
            SettingsRepository(session).bump(IDENTITY_VERSION)
        return DomainInfo(domain, False, None, None, False)

    @audited("domain.remove")
    def remove_domain(self, name: str) -> None:
        domain = normalise_domain(name)
        with self._store.transaction() as session:
            repo = SlotRepository(session)
            slot = repo.get("domain", domain)
            if slot is None:
                raise NotFound(f"no domain '{name}'")
            repo.delete(slot)
            SettingsRepository(session).bump(IDENTITY_VERSION)

    def domain(self, name: str) -> DomainInfo:
        """One domain, however its name is typed (case, trailing dot); NotFound if unknown."""
        wanted = self._slot("domain", name)
        found = next((d for d in self.domains() if d.name == wanted), None)
        if found is None:  # removed meanwhile
            raise NotFound(f"no domain '{name}'")
        return found

    def domains(self) -> list[DomainInfo]:
        with self._store.reading() as session:
            repo = SlotRepository(session)
            result = []
            for slot in repo.of_kind("domain"):
                active = repo.version(slot.active_version_id) if slot.active_version_id else None
                result.append(
                    DomainInfo(
                        slot.name,
                        active is not None,
                        active.not_after if active else None,
                        active.subject if active else None,
                        slot.pending_csr_der is not None,
                    )
                )
            return result

    def certificate_for_sni(self, server_name: str | None) -> ActiveIdentity | None:
        """The identity for a TLS ClientHello's SNI: the domain's certificate when the name is
        the domain or the node's host label + domain, else the server certificate. O(1): a
        dict built once per change of the identity counter."""
        sni = self._sni_map()
        if server_name:
            wanted = normalise_domain(server_name)
            found = sni.domains.get(wanted)
            if found is None:
                label, _, rest = wanted.partition(".")
                if label == sni.host_label:
                    found = sni.domains.get(rest)
            if found is not None:
                return found
        return sni.server

    def _sni_map(self) -> _SniMap:
        version = self.version()
        cached = self._sni
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            cached = self._sni  # another thread may have rebuilt it meanwhile
            if cached is not None and cached.version == version:
                return cached
            with self._store.reading() as session:
                repo = SlotRepository(session)
                domains = {
                    slot.name: self._identity(slot, row)
                    for slot, row in repo.active_versions("domain")
                }
                server = self._active_row(repo, "server", "")
            sni = _SniMap(
                version,
                self._identity(*server) if server else None,
                domains,
                self._node.get().host_label,
            )
            self._sni = sni
            return sni


def normalise_domain(name: str) -> str:
    """A domain name as domain slots are keyed: no surrounding blanks or trailing dot, lower
    case (DNS names are case-insensitive)."""
    return name.strip().rstrip(".").lower()


def _served_chain(
    path: list[x509.Certificate], pool: list[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """The CAs a peer needs after the leaf: ``path`` ends with the trust anchor, which may be a
    trusted intermediate; then its issuers from ``pool`` follow, up to (without) the root."""
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for candidate in pool:
        by_subject.setdefault(candidate.subject, []).append(candidate)
    used = set(path)
    while path and path[-1].subject != path[-1].issuer:
        top = path[-1]
        parent = None
        for candidate in by_subject.get(top.issuer, ()):
            if candidate in used:
                continue
            try:
                top.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            parent = candidate
            break
        if parent is None:
            break
        path.append(parent)
        used.add(parent)
    if path and path[-1].subject == path[-1].issuer:
        path.pop()
    return tuple(path)


def _require_client_auth(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if (
        ExtendedKeyUsageOID.CLIENT_AUTH not in eku
        and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        raise PolicyViolation(
            "missing-client-auth",
            "the client certificate's extended key usage lacks clientAuth (TLS Web Client "
            "Authentication)",
        )
