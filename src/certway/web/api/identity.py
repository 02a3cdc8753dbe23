"""What the server certificate, client certificate and domain routers share: uploads, CSR
requests and the certificate descriptions they answer with."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, Field

from certway.pki.csr import SubjectFields
from certway.services.identities import CsrOptions, IdentityKind
from certway.web.api.common import Out, Timestamp, blob, node_of, required
from certway.web.context import Principal, as_principal

__all__ = [
    "CsrRequest",
    "IdentityOut",
    "IdentityTextOut",
    "PendingCsrOut",
    "PreviewOut",
    "Subject",
    "Upload",
    "VersionOut",
    "upload",
]


class Upload(BaseModel):
    certificate: str = Field(description="PEM, base64 DER or PKCS#7")
    chain: str | None = None
    key: str | None = Field(default=None, description="PEM private key (no pending CSR)")
    passphrase: str | None = Field(default=None, description="never echoed or logged")


class Subject(BaseModel):
    country: str | None = None
    state: str | None = None
    locality: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    email: str | None = None


class CsrRequest(BaseModel):
    cn: Literal["node", "cluster"] = "node"
    alt_names: Literal["none", "cluster"] = "none"
    add_san: list[str] = []
    ucm_domains: list[str] = []
    ucm_domain_format: Literal["dns", "collab-edge"] = "dns"
    xmpp_domains: list[str] = []
    chat_aliases: list[str] = []
    phone_security_profiles: list[str] = []
    key_type: str = "rsa:4096"
    digest: Literal["sha256", "sha384", "sha512"] = "sha256"
    subject: Subject = Subject()

    def options(self) -> CsrOptions:
        s = self.subject
        return CsrOptions(
            cn=self.cn,
            alt_names=self.alt_names,
            add_san=tuple(self.add_san),
            ucm_domains=tuple(self.ucm_domains),
            ucm_domain_format=self.ucm_domain_format,
            xmpp_domains=tuple(self.xmpp_domains),
            chat_aliases=tuple(self.chat_aliases),
            phone_security_profiles=tuple(self.phone_security_profiles),
            key_type=self.key_type,
            digest=self.digest,
            subject=SubjectFields(
                s.country, s.state, s.locality, s.organization, s.organizational_unit, s.email
            ),
        )


class IdentityOut(Out):
    """A node certificate: the active version of the server, client or a domain certificate."""

    kind: str = Field(description="server, client or domain")
    name: str | None = Field(description="the domain; null for the server and client")
    version: int
    subject: str
    issuer: str
    serial: str
    not_before: Timestamp
    not_after: Timestamp
    sha256_fingerprint: str
    alt_names: list[str]
    source: str
    warnings: list[str]
    temporary: bool
    chain: list[str]
    pem: str


class IdentityTextOut(IdentityOut):
    text: str = Field(description="the certificate as text, as `openssl x509 -text` shows it")


class PendingCsrOut(Out):
    kind: str
    name: str | None
    created_at: Timestamp
    common_name: str
    alt_names: list[str]
    key: str
    pem: str
    warnings: list[str] = Field(default=[], description="what to know before having it signed")


class VersionOut(Out):
    version: int
    subject: str
    not_after: Timestamp
    source: str
    created_at: Timestamp
    active: bool


class PreviewOut(Out):
    alt_names: list[str]


def upload(
    request: Request, kind: IdentityKind, name: str, body: Upload, who: Principal
) -> dict[str, Any]:
    with as_principal(who):
        result = node_of(request).identities.upload(
            kind,
            name,
            required(body.certificate, "certificate"),
            chain_data=blob(body.chain, "chain"),
            key_data=blob(body.key, "key"),
            passphrase=body.passphrase.encode() if body.passphrase else None,
        )
    return {**result.info.as_dict(), "warnings": result.warnings}
