"""Domain certificates: one slot per domain, added and removed by the administrator."""

from __future__ import annotations

from certway.errors import Conflict, NotFound, PolicyViolation
from certway.pki.names import check_dns_name
from certway.services.audit import audited
from certway.services.identities.csr import CsrRequests
from certway.services.identities.model import DomainDetail, DomainInfo, normalise_domain
from certway.store.repositories import SlotRepository
from certway.store.topics import Topic, TopicRepository

__all__ = ["DomainCertificates"]


class DomainCertificates(CsrRequests):
    """Add, list, show and remove domains."""

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
            TopicRepository(session).bump(Topic.IDENTITY)
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
            TopicRepository(session).bump(Topic.IDENTITY)

    def domain(self, name: str) -> DomainInfo:
        """One domain, however its name is typed (case, trailing dot); NotFound if unknown."""
        wanted = self._slot("domain", name)
        found = next((d for d in self.domains() if d.name == wanted), None)
        if found is None:  # removed meanwhile
            raise NotFound(f"no domain '{name}'")
        return found

    def domain_detail(self, name: str) -> DomainDetail:
        """One domain as shown on its own: its certificate once it has one, its pending CSR
        if any. A domain without a certificate (just added, or waiting for its CSR to be
        signed) is shown as such; only an unknown domain is NotFound."""
        domain = self.domain(name)
        info = self.info("domain", domain.name) if domain.has_certificate else None
        pending = self.pending_csr("domain", domain.name) if domain.pending_csr else None
        return DomainDetail(domain.name, info, pending)

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
