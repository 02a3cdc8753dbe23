"""REST API ``/api/v1`` (I2): every feature of the node, with the same checks and messages as
the CLI (the same services raise the same errors; the app maps them to problem+json).

Certificates, keys, CRLs and bundles travel as text in JSON: PEM, or base64 of DER. Reads need
an account; changes need a read-write account (``Writer``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from certway.errors import DecodeError, PolicyViolation
from certway.pki.csr import SubjectFields
from certway.services.identities import CsrOptions, Kind
from certway.services.local_ca import CaInfo, CaSettings
from certway.services.node import Node
from certway.services.zones import (
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    MAX_INTERVAL,
    MIN_INTERVAL,
    Zone,
    ZoneStatus,
)
from certway.sip.rules import MAX_PRIORITY
from certway.web.app import ApiRoute, Reader, Writer, as_principal, reads_only

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute)


def _node(request: Request) -> Node:
    node: Node = request.app.state.web.node
    return node


def blob(text: str | None, what: str) -> bytes | None:
    """PEM text as it is, anything else as base64 of DER."""
    if text is None or text == "":
        return None
    if "-----BEGIN" in text:
        return text.encode("utf-8")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what} is neither PEM nor base64 of DER") from None


MAX_DAYS = 36_500
"""Longest validity the API accepts (100 years): more overflows the date arithmetic."""
Days = Annotated[int, Field(le=MAX_DAYS, description=f"validity in days, at most {MAX_DAYS}")]
Version = Annotated[int, PathParam(ge=0, le=2**31 - 1)]


def required(text: str, what: str) -> bytes:
    data = blob(text, what)
    if data is None:
        raise PolicyViolation("empty", f"{what} is empty")
    return data


# -- models ----------------------------------------------------------------------------------
class Data(BaseModel):
    data: str = Field(description="PEM, or base64 of DER")


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


class NodeSettingsBody(BaseModel):
    fqdn: str | None = None
    role: Literal["edge", "core"] | None = None
    cluster_fqdn: str | None = None
    peers: list[str] | None = None


class DomainBody(BaseModel):
    name: str


class SourcesBody(BaseModel):
    urls: list[str]


class ScheduleBody(BaseModel):
    daily_at: str | None = Field(default=None, description="HH:MM, UTC")
    enabled: bool | None = None


class PolicyBody(BaseModel):
    mode: Literal["on", "off"] | None = None
    ocsp: bool | None = None
    crl: bool | None = None
    cdp: bool | None = None
    scope: Literal["peer", "all"] | None = None
    fallback: Literal["not-revoked", "revoked"] | None = None
    profile: Literal["rfc5280", "webpki"] | None = Field(
        default=None,
        description="How certificate paths are judged: rfc5280 (enterprise and UC PKIs) or "
        "webpki (the strict web PKI rules)",
    )


class CheckBody(BaseModel):
    certificate: str
    purpose: Literal["client", "server"] = "client"
    name: str | None = None
    service: Literal["admin-https", "sip-tls"] = "admin-https"
    chain: str | None = None
    regex: str | None = None
    format: str | None = None


class RootBody(BaseModel):
    name: str
    subject: str
    key_type: str = "ec:p256"
    days: Days = 3650
    crl_urls: list[str] = []
    ocsp_url: str | None = None


class IntermediateBody(RootBody):
    parent: str
    days: Days = 1825


class SignBody(BaseModel):
    csr: str
    profile: Literal["server-client", "server", "client", "sub-ca"] = "server-client"
    days: Days = 365
    chain: bool = False


class RevokeBody(BaseModel):
    serial: str
    reason: str | None = None


class AdminBody(BaseModel):
    name: str
    access: Literal["read-write", "read-only"]
    password: str = Field(description="at least 10 characters; never echoed")


class PasswordBody(BaseModel):
    password: str


class SecurityBody(BaseModel):
    mode: (
        Literal["not-required", "certificate-validation", "certificate-based-authentication"] | None
    ) = None
    regex: str | None = None
    format: str | None = None


class SipBody(BaseModel):
    mutual_tls: str | None = Field(
        default=None, description="off, request or require", examples=["request"]
    )
    eku_check: bool | Literal["on", "off"] | None = Field(
        default=None, description="client EKU checking: the peer certificate must allow clientAuth"
    )


class RuleBody(BaseModel):
    priority: int = Field(ge=0, le=MAX_PRIORITY, description="lower numbers are applied first")
    type: str = Field(description="exact, prefix, suffix or regex", examples=["suffix"])
    pattern: str = Field(description="matched against the CN and every SAN of the certificate")
    action: str = Field(description="allow or deny", examples=["allow"])


class ZoneBody(BaseModel):
    name: str
    peers: list[str] = Field(description="peer addresses: DNS names or IP addresses")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    tls_verify: bool | Literal["on", "off"] = Field(
        default=True,
        description="the peer certificate must chain to the trusted CA list, be unrevoked and "
        "name the peer address (or the verify subject name)",
    )
    verify_subject: str | None = Field(
        default=None, description="the name the peer certificate must carry instead"
    )
    interval: int = Field(
        default=DEFAULT_INTERVAL,
        ge=MIN_INTERVAL,
        le=MAX_INTERVAL,
        description="seconds between OPTIONS pings",
    )


RuleId = Annotated[int, PathParam(ge=0, le=2**31 - 1)]
ZONE_CHECK_TIMEOUT = 5.0
"""Seconds a "check now" from the API may spend on each peer (the pinger of ``certway serve``
keeps its own, longer default)."""


def _on(value: bool | str) -> bool:
    return value if isinstance(value, bool) else value == "on"


def _zone(zone: Zone, status: ZoneStatus) -> dict[str, Any]:
    return {**zone.as_dict(), "status": status.as_dict()}


def _ca(info: CaInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": info.kind,
        "parent": info.parent,
        "subject": info.subject,
        "not_after": info.not_after.isoformat(),
        "key": info.key,
        "sha256_fingerprint": info.fingerprint,
        "crl_urls": list(info.crl_urls),
        "ocsp_url": info.ocsp_url,
        "issued": info.issued,
        "revoked": info.revoked,
        "crl_number": info.crl_number,
    }


def _pem(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# -- status, alarms, audit, node -------------------------------------------------------------
@router.get("/status", tags=["status"])
def status(request: Request, who: Reader) -> dict[str, Any]:
    """Alarms and the expiry of every node certificate."""
    node = _node(request)
    server = node.identities.info("server")
    return {
        "node": node.settings.get().as_dict(),
        "alarms": [a.as_dict() for a in node.alarms.current()],
        "server_certificate": {
            "subject": server.subject,
            "not_after": server.not_after.isoformat(),
            "temporary": server.temporary,
        },
        "domains": [d.as_dict() for d in node.identities.domains()],
        "you": {"name": who.name, "access": who.access},
    }


@router.get("/alarms", tags=["status"])
def alarms(request: Request, _who: Reader) -> list[dict[str, Any]]:
    return [a.as_dict() for a in _node(request).alarms.current()]


@router.get("/audit", tags=["status"])
def audit(
    request: Request,
    _who: Reader,
    since: dt.datetime | None = None,
    limit: int = Query(200, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return [e.as_dict() for e in _node(request).audit.entries(since=since, limit=limit)]


@router.get("/node", tags=["node"])
def node_get(request: Request, _who: Reader) -> dict[str, Any]:
    return _node(request).settings.get().as_dict()


@router.put("/node", tags=["node"])
def node_put(request: Request, body: NodeSettingsBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return (
            _node(request)
            .settings.set(
                fqdn=body.fqdn, role=body.role, cluster_fqdn=body.cluster_fqdn, peers=body.peers
            )
            .as_dict()
        )


# -- server, client and domain certificates --------------------------------------------------
@router.get("/server-cert", tags=["server certificate"])
def server_get(request: Request, _who: Reader) -> dict[str, Any]:
    return _node(request).identities.info("server").as_dict(with_text=True)


@router.get("/server-cert/pem", tags=["server certificate"])
def server_pem(request: Request, _who: Reader) -> Response:
    return _pem(_node(request).identities.info("server").pem, "server-certificate.pem")


@router.post("/server-cert", tags=["server certificate"])
def server_upload(request: Request, body: Upload, who: Writer) -> dict[str, Any]:
    return _upload(request, "server", "", body, who)


def _upload(request: Request, kind: Kind, name: str, body: Upload, who: Any) -> dict[str, Any]:
    with as_principal(who):
        result = _node(request).identities.upload(
            kind,
            name,
            required(body.certificate, "certificate"),
            chain_data=blob(body.chain, "chain"),
            key_data=blob(body.key, "key"),
            passphrase=body.passphrase.encode() if body.passphrase else None,
        )
    return {**result.info.as_dict(), "warnings": result.warnings}


@router.get("/server-cert/history", tags=["server certificate"])
def server_history(request: Request, _who: Reader) -> list[dict[str, Any]]:
    return [v.as_dict() for v in _node(request).identities.history("server")]


@router.post("/server-cert/restore/{version}", tags=["server certificate"])
def server_restore(request: Request, version: Version, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return _node(request).identities.restore("server", "", version).as_dict()


@router.get("/server-cert/csr", tags=["server certificate"])
def server_csr(request: Request, _who: Reader) -> dict[str, Any] | None:
    pending = _node(request).identities.pending_csr("server")
    return pending.as_dict() if pending else None


@router.post("/server-cert/csr/preview", tags=["server certificate"])
@reads_only
def server_csr_preview(request: Request, body: CsrRequest, _who: Reader) -> dict[str, Any]:
    """'Alternative name as it will appear', without creating anything."""
    return {"alt_names": _node(request).identities.preview("server", "", body.options())}


@router.post("/server-cert/csr", tags=["server certificate"])
def server_csr_generate(request: Request, body: CsrRequest, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return _node(request).identities.generate_csr("server", "", body.options()).as_dict()


@router.delete("/server-cert/csr", tags=["server certificate"], status_code=204)
def server_csr_discard(request: Request, who: Writer) -> None:
    with as_principal(who):
        _node(request).identities.discard_csr("server")


@router.get("/client-cert", tags=["client certificate"])
def client_get(request: Request, _who: Reader) -> dict[str, Any]:
    return _node(request).identities.info("client").as_dict()


@router.post("/client-cert", tags=["client certificate"])
def client_upload(request: Request, body: Upload, who: Writer) -> dict[str, Any]:
    return _upload(request, "client", "", body, who)


@router.post("/client-cert/copy-server", tags=["client certificate"])
def client_copy(request: Request, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return _node(request).identities.copy_server_to_client().as_dict()


@router.get("/domains", tags=["domains"])
def domains(request: Request, _who: Reader) -> list[dict[str, Any]]:
    return [d.as_dict() for d in _node(request).identities.domains()]


@router.post("/domains", tags=["domains"], status_code=201)
def domain_add(request: Request, body: DomainBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return _node(request).identities.add_domain(body.name).as_dict()


@router.delete("/domains/{name}", tags=["domains"], status_code=204)
def domain_remove(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        _node(request).identities.remove_domain(name)


@router.get("/domains/{name}", tags=["domains"])
def domain_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    return _node(request).identities.info("domain", name).as_dict()


@router.post("/domains/{name}/certificate", tags=["domains"])
def domain_upload(request: Request, name: str, body: Upload, who: Writer) -> dict[str, Any]:
    return _upload(request, "domain", name, body, who)


@router.get("/domains/{name}/csr", tags=["domains"])
def domain_csr(request: Request, name: str, _who: Reader) -> dict[str, Any] | None:
    pending = _node(request).identities.pending_csr("domain", name)
    return pending.as_dict() if pending else None


@router.post("/domains/{name}/csr", tags=["domains"])
def domain_csr_generate(
    request: Request, name: str, body: CsrRequest, who: Writer
) -> dict[str, Any]:
    with as_principal(who):
        return _node(request).identities.generate_csr("domain", name, body.options()).as_dict()


@router.delete("/domains/{name}/csr", tags=["domains"], status_code=204)
def domain_csr_discard(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        _node(request).identities.discard_csr("domain", name)


# -- trusted CAs, CRLs, revocation ------------------------------------------------------------
@router.get("/trusted-cas", tags=["trust"])
def trusted(request: Request, _who: Reader) -> list[dict[str, object]]:
    return [e.as_dict() for e in _node(request).trusted_cas.entries()]


@router.post("/trusted-cas", tags=["trust"])
def trusted_add(request: Request, body: Data, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        report = _node(request).trusted_cas.add(required(body.data, "CA file"))
    return {
        "added": [i.as_dict() for i in report.added],
        "skipped": report.skipped,
        "warnings": report.warnings,
        "crls": report.crls,
    }


@router.get("/trusted-cas/{fingerprint}", tags=["trust"])
def trusted_show(request: Request, fingerprint: str, _who: Reader) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    from certway.trust.identity import certificate_text

    cert = _node(request).trusted_cas.certificate(fingerprint)
    return {
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "text": certificate_text(cert),
    }


@router.delete("/trusted-cas/{fingerprint}", tags=["trust"])
def trusted_remove(request: Request, fingerprint: str, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return {"removed": _node(request).trusted_cas.remove([fingerprint])}


@router.post("/trusted-cas/reset", tags=["trust"])
def trusted_reset(request: Request, who: Writer) -> list[dict[str, object]]:
    with as_principal(who):
        return [e.as_dict() for e in _node(request).trusted_cas.reset()]


@router.get("/crls", tags=["revocation"])
def crls(request: Request, _who: Reader) -> list[dict[str, object]]:
    return [h.as_dict() for h in _node(request).revocation.held()]


@router.post("/crls/manual", tags=["revocation"])
def crl_upload(request: Request, body: Data, who: Writer) -> list[str]:
    with as_principal(who):
        accepted = _node(request).revocation.upload_manual(required(body.data, "CRL"))
    return [a.describe() for a in accepted]


@router.delete("/crls/manual", tags=["revocation"])
def crl_remove(request: Request, who: Writer) -> dict[str, int]:
    with as_principal(who):
        return {"removed": _node(request).revocation.remove_manual()}


@router.get("/crl-sources", tags=["revocation"])
def sources(request: Request, _who: Reader) -> dict[str, Any]:
    node = _node(request)
    return {
        "schedule": node.revocation.schedule().as_dict(),
        "sources": [s.as_dict() for s in node.revocation.sources()],
    }


@router.put("/crl-sources", tags=["revocation"])
def sources_set(request: Request, body: SourcesBody, who: Writer) -> list[dict[str, object]]:
    with as_principal(who):
        return [s.as_dict() for s in _node(request).revocation.set_sources(body.urls)]


@router.post("/crl-sources/update", tags=["revocation"])
def sources_update(request: Request, who: Writer) -> list[dict[str, object]]:
    with as_principal(who):
        return [s.as_dict() for s in _node(request).revocation.update_now()]


@router.put("/crl-schedule", tags=["revocation"])
def schedule_set(request: Request, body: ScheduleBody, who: Writer) -> dict[str, object]:
    with as_principal(who):
        schedule = _node(request).revocation.set_schedule(
            daily_at=body.daily_at, enabled=body.enabled
        )
    return schedule.as_dict()


@router.get("/revocation", tags=["revocation"])
def policies(request: Request, _who: Reader) -> dict[str, Any]:
    node = _node(request)
    return {name: node.revocation.policy(name).as_dict() for name in ("sip-tls", "admin-https")}


@router.put("/revocation/{service}", tags=["revocation"])
def policy_set(
    request: Request,
    service: Literal["sip-tls", "admin-https"],
    body: PolicyBody,
    who: Writer,
) -> dict[str, object]:
    changes: dict[str, object] = {
        "enabled": None if body.mode is None else body.mode == "on",
        "ocsp": body.ocsp,
        "crl": body.crl,
        "cdp": body.cdp,
        "scope": body.scope,
        "fallback": body.fallback,
        "profile": body.profile,
    }
    with as_principal(who):
        return _node(request).revocation.set_policy(service, **changes).as_dict()


@router.post("/check", tags=["trust"])
@reads_only
def check(request: Request, body: CheckBody, _who: Reader) -> dict[str, Any]:
    """Client certificate testing (S3): trust, revocation per policy, username mapping."""
    report = _node(request).client_check.check(
        required(body.certificate, "certificate"),
        purpose=body.purpose,
        name=body.name,
        service=body.service,
        chain=blob(body.chain, "chain"),
        regex=body.regex,
        fmt=body.format,
    )
    return report.as_dict()


# -- local CA --------------------------------------------------------------------------------
@router.get("/local-ca", tags=["local CA"])
def cas(request: Request, _who: Reader) -> list[dict[str, Any]]:
    return [_ca(c) for c in _node(request).local_ca.cas()]


@router.post("/local-ca/roots", tags=["local CA"], status_code=201)
def ca_root(request: Request, body: RootBody, who: Writer) -> dict[str, Any]:
    settings = CaSettings(tuple(body.crl_urls), body.ocsp_url)
    with as_principal(who):
        info = _node(request).local_ca.create_root(
            body.name, body.subject, key_type=body.key_type, days=body.days, settings=settings
        )
    return _ca(info)


@router.post("/local-ca/intermediates", tags=["local CA"], status_code=201)
def ca_intermediate(request: Request, body: IntermediateBody, who: Writer) -> dict[str, Any]:
    settings = CaSettings(tuple(body.crl_urls), body.ocsp_url)
    with as_principal(who):
        info = _node(request).local_ca.create_intermediate(
            body.name,
            body.parent,
            body.subject,
            key_type=body.key_type,
            days=body.days,
            settings=settings,
        )
    return _ca(info)


@router.get("/local-ca/{name}/certificate", tags=["local CA"])
def ca_certificate(request: Request, name: str, _who: Reader) -> Response:
    from cryptography.hazmat.primitives import serialization

    chain = _node(request).local_ca.chain(name)
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()
    return _pem(text, f"{name}.pem")


@router.post("/local-ca/{name}/sign", tags=["local CA"])
def ca_sign(request: Request, name: str, body: SignBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        result = _node(request).local_ca.sign(
            name, required(body.csr, "CSR"), profile=body.profile, days=body.days
        )
    cert = result.certificate
    return {
        "serial": format(cert.serial_number, "X"),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "pem": result.pem(with_chain=body.chain).decode(),
    }


@router.post("/local-ca/{name}/revoke", tags=["local CA"])
def ca_revoke(request: Request, name: str, body: RevokeBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        crl = _node(request).local_ca.revoke(name, body.serial, reason=body.reason)
    return {"crl_number": crl.number, "entries": crl.entries}


@router.get("/local-ca/{name}/issued", tags=["local CA"])
def ca_issued(
    request: Request, name: str, _who: Reader, search: str | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "serial": i.serial,
            "subject": i.subject,
            "alt_names": i.alt_names,
            "profile": i.profile,
            "not_after": i.not_after.isoformat(),
            "status": i.status,
            "revoked_at": i.revoked_at.isoformat() if i.revoked_at else None,
            "reason": i.reason,
        }
        for i in _node(request).local_ca.issued(name, search=search)
    ]


@router.get("/local-ca/{name}/crl", tags=["local CA"])
def ca_crl(request: Request, name: str, who: Reader) -> Response:
    with as_principal(who):
        crl = _node(request).local_ca.current_crl(name)
    return Response(
        crl.der,
        media_type="application/pkix-crl",
        headers={"Content-Disposition": f'attachment; filename="{name}.crl"'},
    )


# -- admin accounts and client-certificate security ------------------------------------------
@router.get("/admins", tags=["admin"])
def admins(request: Request, _who: Reader) -> list[dict[str, str]]:
    return [a.as_dict() for a in _node(request).admins.accounts()]


@router.post("/admins", tags=["admin"], status_code=201)
def admin_add(request: Request, body: AdminBody, who: Writer) -> dict[str, str]:
    with as_principal(who):
        return _node(request).admins.add(body.name, body.access, body.password).as_dict()


@router.put("/admins/{name}/password", tags=["admin"], status_code=204)
def admin_password(request: Request, name: str, body: PasswordBody, who: Writer) -> None:
    with as_principal(who):
        _node(request).admins.set_password(name, body.password)


@router.delete("/admins/{name}", tags=["admin"], status_code=204)
def admin_remove(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        _node(request).admins.remove(name)


@router.get("/admin-security", tags=["admin"])
def security(request: Request, _who: Reader) -> dict[str, str]:
    return _node(request).admin_security.get().as_dict()


@router.put("/admin-security", tags=["admin"])
def security_set(request: Request, body: SecurityBody, who: Writer) -> dict[str, str]:
    from certway.web.app import peer_certificate

    with as_principal(who):
        config = _node(request).admin_security.set(
            mode=body.mode,
            regex=body.regex,
            fmt=body.format,
            current_certificate=peer_certificate(request),
        )
    return config.as_dict()


# -- SIP TLS settings, access rules and neighbour zones ---------------------------------------
@router.get("/sip", tags=["SIP TLS"])
def sip_get(request: Request, _who: Reader) -> dict[str, Any]:
    """Mutual TLS mode, client EKU checking and the certificate access rules."""
    return _node(request).sip.get().as_dict()


@router.put("/sip", tags=["SIP TLS"])
def sip_set(request: Request, body: SipBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        config = _node(request).sip.set(mutual_tls=body.mutual_tls, eku_check=body.eku_check)
    return config.as_dict()


@router.get("/sip/rules", tags=["SIP TLS"])
def sip_rules(request: Request, _who: Reader) -> list[dict[str, object]]:
    """The access rules in the order they are applied (priority, then id)."""
    return [r.as_dict() for r in _node(request).sip.rules()]


@router.post("/sip/rules", tags=["SIP TLS"], status_code=201)
def sip_rule_add(request: Request, body: RuleBody, who: Writer) -> dict[str, object]:
    with as_principal(who):
        rule = _node(request).sip.add_rule(
            priority=body.priority, type=body.type, pattern=body.pattern, action=body.action
        )
    return rule.as_dict()


@router.delete("/sip/rules/{id}", tags=["SIP TLS"], status_code=204)
def sip_rule_remove(request: Request, id: RuleId, who: Writer) -> None:
    with as_principal(who):
        _node(request).sip.remove_rule(id)


@router.get("/zones", tags=["zones"])
def zones(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """Every neighbour zone with the status of its last check."""
    service = _node(request).zones
    entries = service.entries()
    statuses = service.statuses()
    return [_zone(z, statuses.get(z.name) or ZoneStatus.unknown(z.name)) for z in entries]


@router.post("/zones", tags=["zones"], status_code=201)
def zone_add(request: Request, body: ZoneBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        zone = _node(request).zones.add(
            body.name,
            peers=body.peers,
            port=body.port,
            tls_verify=_on(body.tls_verify),
            verify_subject=body.verify_subject,
            interval=body.interval,
        )
    return _zone(zone, ZoneStatus.unknown(zone.name))


@router.get("/zones/{name}", tags=["zones"])
def zone_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    service = _node(request).zones
    return _zone(service.get(name), service.status(name))


@router.delete("/zones/{name}", tags=["zones"], status_code=204)
def zone_remove(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        _node(request).zones.remove(name)


@router.post("/zones/{name}/check", tags=["zones"])
async def zone_check(request: Request, name: str, who: Writer) -> dict[str, Any]:
    """Ping the zone's peers now and record its status (Active, or Failed with the reason).

    An unreachable or failing peer is a Failed status, not an error of this request.
    """
    from certway.sip.zones import ZonePinger

    node = _node(request)
    with as_principal(who):
        zone = await run_in_threadpool(node.zones.get, name)
        pinger = ZonePinger(node, node.zones, timeout=ZONE_CHECK_TIMEOUT)
        status = await pinger.check(zone)
    return _zone(zone, status)


# -- TLS profiles ------------------------------------------------------------------------------
# (a self-contained block: the profile of each listener and outbound client, ``tls.policy``)
TlsService = Literal["admin-https", "sip-tls", "zones", "outbound"]


class TlsProfileBody(BaseModel):
    profile: Literal["intermediate", "modern"] = Field(
        description="intermediate: TLS 1.2 with ECDHE and AEAD ciphers, and TLS 1.3; "
        "modern: TLS 1.3 only"
    )


@router.get("/tls", tags=["tls"])
def tls_profiles(request: Request, _who: Reader) -> dict[str, dict[str, object]]:
    """The TLS profile of each service: versions, TLS 1.2 cipher suites, groups."""
    return _node(request).tls.policy().as_dict()


@router.put("/tls/{service}", tags=["tls"])
def tls_profile_set(
    request: Request, service: TlsService, body: TlsProfileBody, who: Writer
) -> dict[str, object]:
    """Select a service's TLS profile; listeners use it from their next connection."""
    with as_principal(who):
        return _node(request).tls.set(service, body.profile).as_dict()
