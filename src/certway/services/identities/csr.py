"""Certificate signing requests: the form, its preview, the pending CSR of a slot
(its key sealed in the store, never exported) and discarding it."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.errors import Conflict, NotFound, PolicyViolation
from certway.pki.csr import CsrForm, build_csr, plan_names
from certway.pki.decode import Decoded
from certway.pki.keys import generate_key
from certway.pki.load import ObjectKind
from certway.pki.names import common_name
from certway.services.audit import audited
from certway.services.identities.model import (
    CSR_ALT_NAMES,
    CSR_COMMON_NAMES,
    CsrOptions,
    IdentityKind,
    PendingCsrInfo,
    alt_names_of,
    slot_label,
)
from certway.services.identities.slots import Slots
from certway.store.repositories import KeyRepository, SlotRepository
from certway.store.topics import Topic, TopicRepository

__all__ = ["CsrRequests"]


class CsrRequests(Slots):
    """Generate, show and discard the pending CSR of the server or a domain."""

    def _form(self, kind: str, name: str, options: CsrOptions) -> CsrForm:
        config = self._node.get()
        if kind == "domain":
            common = name
            extra = (f"{config.host_label}.{name}", *options.add_san)
        else:
            if options.cn not in CSR_COMMON_NAMES:
                raise PolicyViolation(
                    "csr-cn",
                    f"the common name must be 'node' (the system FQDN) or 'cluster' (the "
                    f"cluster FQDN), not '{options.cn}'",
                )
            if options.cn == "cluster" and not config.cluster_fqdn:
                raise PolicyViolation(
                    "csr-cn",
                    "common name 'cluster' needs a cluster FQDN: set it in the node settings first",
                )
            common = config.fqdn
            if options.cn == "cluster" and config.cluster_fqdn:
                common = config.cluster_fqdn
            extra = options.add_san
        if options.alt_names not in CSR_ALT_NAMES:
            raise PolicyViolation(
                "csr-alt-names",
                f"the alternative name choice must be 'none' or 'cluster', not "
                f"'{options.alt_names}'",
            )
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

    def preview(self, kind: IdentityKind, name: str, options: CsrOptions) -> list[str]:
        """'Alternative name as it will appear' for the form, without creating anything."""
        name = self._slot(kind, name)
        return plan_names(self._form(kind, name, options)).preview

    @audited("csr.generate", target=lambda kind, name="", *a, **k: slot_label(kind, name))
    def generate_csr(self, kind: IdentityKind, name: str, options: CsrOptions) -> PendingCsrInfo:
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
                f"a CSR is already pending for the {slot_label(kind, name)} (created "
                f"{pending.created_at:%Y-%m-%d %H:%M} UTC): discard it first"
            )
        key = generate_key(options.key_type)
        csr, _plan = build_csr(key, form, digest=options.digest)
        now = self._clock.now()
        with self._store.transaction() as session:
            TopicRepository(session).bump(Topic.IDENTITY)
            repo = SlotRepository(session)
            slot = repo.get_or_create(kind, name, now)
            if slot.pending_csr_der is not None:
                raise Conflict(f"a CSR is already pending for the {slot_label(kind, name)}")
            keys = KeyRepository(session, self._store.vault)
            slot.pending_key_id = keys.put(key, now)
            slot.pending_csr_der = csr.public_bytes(serialization.Encoding.DER)
            slot.pending_form = json.dumps(options.as_dict())
            slot.pending_created_at = now
            self._audit.note(
                common_name=common_name(csr.subject) or "",
                alt_names=alt_names_of(csr),
                key=keys.description(slot.pending_key_id),
            )
        result = self.pending_csr(kind, name)
        assert result is not None
        return result

    def pending_csr(self, kind: IdentityKind, name: str = "") -> PendingCsrInfo | None:
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
            alt_names=alt_names_of(csr),
            key=key,
            pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
            text=Decoded(ObjectKind.CSR, (csr,)).to_text(),
        )

    @audited("csr.discard", target=lambda kind, name="": slot_label(kind, name))
    def discard_csr(self, kind: IdentityKind, name: str = "") -> None:
        name = self._slot(kind, name)
        with self._store.transaction() as session:
            TopicRepository(session).bump(Topic.IDENTITY)
            slot = SlotRepository(session).get(kind, name)
            if slot is None or slot.pending_csr_der is None:
                raise NotFound(f"no CSR is pending for the {slot_label(kind, name)}")
            slot.pending_csr_der = None
            slot.pending_key_id = None
            slot.pending_form = None
            slot.pending_created_at = None
