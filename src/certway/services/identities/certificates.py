"""Uploading a certificate and restoring an earlier version: checks, the chain
peers are served (intermediates up to a trusted CA), activation."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certway.errors import Conflict, DecodeError, NotFound, PolicyViolation
from certway.pki.checks import check_node_certificate
from certway.pki.convert import chain_order
from certway.pki.keys import key_matches, load_private_key
from certway.pki.load import check_bundle_size, load_certificates
from certway.pki.text import fingerprint, format_name
from certway.services.audit import audited
from certway.services.identities.client import require_client_auth
from certway.services.identities.model import IdentityInfo, IdentityKind, UploadResult, slot_label
from certway.services.identities.slots import Slots
from certway.store.repositories import KeyRepository, SlotRepository
from certway.trust.validate import ValidationOptions, validate

__all__ = ["CertificateUploads"]


class CertificateUploads(Slots):
    """Upload and restore the certificate of a slot."""

    @audited("certificate.upload", target=lambda kind, name="", *a, **k: slot_label(kind, name))
    def upload(
        self,
        kind: IdentityKind,
        name: str,
        cert_data: bytes,
        *,
        chain_data: bytes | None = None,
        key_data: bytes | None = None,
        passphrase: bytes | None = None,
        source: str = "upload",
    ) -> UploadResult:
        """Check and activate a certificate (PEM, DER or PKCS#7, with optional chain and key).

        The key is the pending CSR's when one is pending (uploading a key then is refused, and
        so is a certificate not made from that CSR), else the uploaded key, else the active key
        when the certificate matches it.
        """
        name = self._slot(kind, name)
        try:
            certs = load_certificates(cert_data)
        except DecodeError as exc:
            message = str(exc).removeprefix("not a valid certificate: ")
            raise DecodeError(
                message
                if message.startswith("not a certificate")
                else f"not a certificate: {message}"
            ) from None
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
                    raise PolicyViolation("no-key", _no_key(kind, in_use=False))
                key = keys.get(current[1].key_id)
                if not key_matches(key, leaf.public_key()):
                    raise PolicyViolation("no-key", _no_key(kind, in_use=True))
        now = self._clock.now()
        need_client_auth = kind == "client" or self._node.mutual_tls_in_use()
        try:
            findings = check_node_certificate(
                leaf,
                key,
                at=now,
                require_client_auth=need_client_auth,
                require_server_auth=kind != "client",
            )
        except PolicyViolation as exc:
            if exc.code == "key-mismatch" and pending_key_id is not None:  # no key was given
                raise PolicyViolation("csr-mismatch", _CSR_MISMATCH) from None
            raise
        if kind == "client":
            require_client_auth(leaf)
        chain, chain_warning = self._chain(leaf, extra, now)
        warnings = [f.message for f in findings]
        if chain_warning:
            warnings.append(chain_warning)
        self._audit.note(
            subject=format_name(leaf.subject),
            sha256_fingerprint=fingerprint(leaf),
            warnings=warnings,
        )
        self._activate(kind, name, leaf, chain, key, pending_key_id, source, warnings)
        return UploadResult(self.info(kind, name), warnings)

    def _chain(
        self, leaf: x509.Certificate, extra: list[x509.Certificate], at: dt.datetime
    ) -> tuple[tuple[x509.Certificate, ...], str | None]:
        """Intermediates that lead to a trusted CA, from the bundle or the trusted list."""
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

    @audited(
        "certificate.restore",
        target=lambda kind, name, version: f"{slot_label(kind, name)} version {version}",
    )
    def restore(self, kind: IdentityKind, name: str, version: int) -> IdentityInfo:
        """Make an earlier version active again (as a new version, so listeners reload)."""
        name = self._slot(kind, name)
        if not 1 <= version < 2**31:
            raise NotFound(f"the {slot_label(kind, name)} has no version {version}")
        with self._store.reading() as session:
            repo = SlotRepository(session)
            slot = repo.get(kind, name)
            old = repo.version_number(slot, version) if slot is not None else None
            if slot is None or old is None:
                raise NotFound(f"the {slot_label(kind, name)} has no version {version}")
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


_CSR_MISMATCH = (
    "the certificate does not match the pending CSR (its public key is not the CSR's): upload "
    "the certificate signed from that CSR, or, if the certificate was made elsewhere, discard "
    "the CSR and upload the certificate with its private key"
)


def _no_key(kind: IdentityKind, *, in_use: bool) -> str:
    """Why a certificate uploaded without a key (and no CSR pending) has none, and what to do
    (``in_use``: the slot has a key, not this certificate's)."""
    if kind == "client":  # the client certificate has no CSR
        why = "no private key was given"
        if in_use:
            why += " and this certificate is not for the key in use"
        return f"{why}: upload the certificate with its private key"
    why = "no private key was given and no CSR is pending"
    if in_use:
        why += ", and this certificate is not for the key in use"
    return (
        f"{why}: upload the certificate with its private key, or generate a CSR and upload "
        "the certificate signed from it"
    )


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
