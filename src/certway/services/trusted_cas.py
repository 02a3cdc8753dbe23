"""The trusted CA list: append, view, remove, reset to default, CRLs found in CA files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import Clock
from certway.errors import DecodeError, NotFound, PolicyViolation
from certway.pki.encoding import is_pem, pem_blocks
from certway.pki.load import check_bundle_size, load_certificates, load_crls
from certway.pki.names import common_name
from certway.pki.text import fingerprint, format_name
from certway.services.audit import Audit, audited
from certway.services.crl_store import accept_crl
from certway.store.db import Store
from certway.store.repositories import TrustRepository
from certway.store.schema import TrustedCaRow
from certway.store.topics import Topic, TopicRepository
from certway.trust.anchors import TrustSnapshot

__all__ = ["TrustAddReport", "TrustedCAs", "TrustedCaInfo"]


@dataclass(frozen=True, slots=True)
class TrustedCaInfo:
    fingerprint: str
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    origin: str

    def as_dict(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class TrustAddReport:
    added: list[TrustedCaInfo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    crls: list[str] = field(default_factory=list)


def _info(row: TrustedCaRow) -> TrustedCaInfo:
    cert = x509.load_der_x509_certificate(row.certificate_der)
    return TrustedCaInfo(
        fingerprint=row.fingerprint,
        subject=row.subject,
        issuer=format_name(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        origin=row.origin,
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


_CA_FILE_LABELS = frozenset({"CERTIFICATE", "TRUSTED CERTIFICATE", "PKCS7", "X509 CRL"})


def _split_bundle(
    data: bytes,
) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """Certificates and CRLs of an uploaded CA file (PEM bundle, DER, PKCS#7)."""
    if is_pem(data):
        blocks = pem_blocks(data)
        certs = [b for b in blocks if b.label in {"CERTIFICATE", "TRUSTED CERTIFICATE", "PKCS7"}]
        crls = [b for b in blocks if b.label == "X509 CRL"]
        other = next((b.label for b in blocks if b.label not in _CA_FILE_LABELS), None)
        if other is not None:
            raise DecodeError(
                f"the CA file holds a {other} block: only certificates and CRLs belong there"
            )
        check_bundle_size(len(certs))  # before parsing thousands of certificates
        cert_list = [c for b in certs for c in load_certificates(b.pem)]
        check_bundle_size(len(cert_list))
        crl_list = [c for b in crls for c in load_crls(b.pem)]
        if not cert_list and not crl_list:
            raise DecodeError("the file holds no certificate")
        return cert_list, crl_list
    try:
        return load_certificates(data), []
    except DecodeError as exc:
        raise DecodeError(
            f"not a CA certificate file: expected PEM or DER certificates (or PKCS#7); {exc}"
        ) from None


class TrustedCAs:
    TOPICS = (Topic.TRUSTED_CAS,)  # what snapshot() is built from
    """Trusted CA list in the store, with an in-memory snapshot refreshed on change."""

    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._snapshot: tuple[int, TrustSnapshot] | None = None

    @audited("trust.add", target=lambda data: "")
    def add(self, data: bytes) -> TrustAddReport:
        """Append CA certificates (and embedded CRLs) from a PEM/DER/PKCS#7 file, atomically."""
        certs, crls = _split_bundle(data)
        for cert in certs:
            if not _is_ca(cert):
                raise PolicyViolation(
                    "not-a-ca",
                    f"{format_name(cert.subject)} is not a CA certificate (no BasicConstraints "
                    "CA:TRUE): only CA certificates belong in the trusted list; nothing was added",
                )
        report = TrustAddReport()
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = TrustRepository(session)
            rows = list(repo.all())
            known = {r.fingerprint for r in rows}
            cns: dict[str, str] = {}
            for row in rows:
                cert = x509.load_der_x509_certificate(row.certificate_der)
                cns[_cn(cert)] = row.fingerprint
            for cert in certs:
                fp = fingerprint(cert)
                if fp in known:
                    report.skipped.append(f"{format_name(cert.subject)} is already trusted ({fp})")
                    continue
                cn = _cn(cert)
                if cn and cn in cns:
                    report.warnings.append(
                        f"another trusted CA has the same common name '{cn}': check that both "
                        "are wanted"
                    )
                if cert.not_valid_after_utc <= now:
                    report.warnings.append(
                        f"{format_name(cert.subject)} expired on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d}: it will not validate anything"
                    )
                repo.add(
                    TrustedCaRow(
                        fingerprint=fp,
                        subject=format_name(cert.subject),
                        certificate_der=cert.public_bytes(serialization.Encoding.DER),
                        added_at=now,
                        origin="user",
                    )
                )
                known.add(fp)
                cns[cn] = fp
                report.added.append(_info(repo.get(fp)))  # type: ignore[arg-type]
            trusted = [x509.load_der_x509_certificate(r.certificate_der) for r in repo.all()]
            for crl in crls:
                accepted = accept_crl(
                    session, crl, kind="embedded", source="CA file", trusted=trusted, at=now
                )
                report.crls.append(accepted.describe())
            TopicRepository(session).bump(Topic.TRUSTED_CAS)
            self._audit.note(added=[i.fingerprint for i in report.added], crls=report.crls)
        return report

    def entries(self) -> list[TrustedCaInfo]:
        with self._store.reading() as session:
            return [_info(r) for r in TrustRepository(session).all()]

    def certificate(self, fingerprint_or_prefix: str) -> x509.Certificate:
        return x509.load_der_x509_certificate(self._row(fingerprint_or_prefix).certificate_der)

    def _row(self, fp: str) -> TrustedCaRow:
        wanted = fp.upper().replace(":", "")
        if len(wanted) < 8:
            raise PolicyViolation("fingerprint", "give at least 8 hex digits of the fingerprint")
        with self._store.reading() as session:
            rows = [
                r for r in TrustRepository(session).all()
                if r.fingerprint.replace(":", "").startswith(wanted)
            ]  # fmt: skip
        if not rows:
            raise NotFound(f"no trusted CA has fingerprint {fp}")
        if len(rows) > 1:
            raise PolicyViolation("fingerprint", f"fingerprint {fp} matches several CAs: give more")
        return rows[0]

    @audited("trust.remove", target=lambda fps: ", ".join(fps))
    def remove(self, fingerprints: list[str]) -> list[str]:
        """Delete entries (all or nothing); returns their subjects."""
        rows = [self._row(fp) for fp in fingerprints]
        with self._store.transaction() as session:
            repo = TrustRepository(session)
            for row in rows:
                repo.remove(row.fingerprint)
            TopicRepository(session).bump(Topic.TRUSTED_CAS)
        return [r.subject for r in rows]

    @audited("trust.reset", target=lambda: "")
    def reset(self) -> list[TrustedCaInfo]:
        """Restore the factory list (reset to default)."""
        now = self._clock.now()
        with self._store.transaction() as session:
            repo = TrustRepository(session)
            repo.clear()
            for default in repo.defaults():
                cert = x509.load_der_x509_certificate(default.certificate_der)
                repo.add(
                    TrustedCaRow(
                        fingerprint=default.fingerprint,
                        subject=format_name(cert.subject),
                        certificate_der=default.certificate_der,
                        added_at=now,
                        origin="factory",
                    )
                )
            TopicRepository(session).bump(Topic.TRUSTED_CAS)
            return [_info(r) for r in repo.all()]

    @audited("trust.add-factory", target=lambda cert: format_name(cert.subject))
    def add_factory(self, cert: x509.Certificate) -> None:
        """Record ``cert`` as part of the factory list and trust it (used by the factory CA)."""
        fp = fingerprint(cert)
        der = cert.public_bytes(serialization.Encoding.DER)
        with self._store.transaction() as session:
            repo = TrustRepository(session)
            repo.add_default(fp, der)
            if repo.get(fp) is None:
                repo.add(
                    TrustedCaRow(
                        fingerprint=fp,
                        subject=format_name(cert.subject),
                        certificate_der=der,
                        added_at=self._clock.now(),
                        origin="factory",
                    )
                )
            TopicRepository(session).bump(Topic.TRUSTED_CAS)

    def version(self) -> int:
        with self._store.reading() as session:
            return TopicRepository(session).versions(self.TOPICS)[0]

    def snapshot(self) -> TrustSnapshot:
        """The current list as a snapshot; rebuilt only when the list changed."""
        version = self.version()
        cached = self._snapshot
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._store.reading() as session:
            certs = [
                x509.load_der_x509_certificate(r.certificate_der)
                for r in TrustRepository(session).all()
            ]
        snapshot = TrustSnapshot.of(certs)
        self._snapshot = (version, snapshot)
        return snapshot


def _cn(cert: x509.Certificate) -> str:
    return common_name(cert.subject) or ""
