"""CSR building with the Expressway name rules and CSR checks before signing.

``plan_names`` turns an Expressway-style form into the exact subject alternative names the
request will hold (the read-only preview); ``build_csr`` signs it. Both are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.errors import PolicyViolation
from certway.pki.keys import PrivateKey, check_public_key
from certway.pki.names import (
    check_dns_name,
    check_fqdn,
    parse_san,
    san_sort_key,
    san_text,
    subject_attribute,
)

__all__ = [
    "DIGESTS",
    "CsrForm",
    "NamePlan",
    "SubjectFields",
    "build_csr",
    "check_csr",
    "digest_for",
    "plan_names",
]

Role = Literal["edge", "core"]
UcmFormat = Literal["dns", "collab-edge"]

DIGESTS: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def digest_for(name: str) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The hash for a digest name; SHA-1 and unknown names are refused."""
    key = name.lower().replace("-", "")
    if key in {"sha1", "md5"}:
        raise PolicyViolation("weak-digest", f"{name} is not allowed: use sha256, sha384 or sha512")
    if key not in DIGESTS:
        raise PolicyViolation("digest", f"unknown digest '{name}': use sha256, sha384 or sha512")
    return DIGESTS[key]()


@dataclass(frozen=True, slots=True)
class SubjectFields:
    """The subject fields of the CSR form besides the common name."""

    country: str | None = None
    state: str | None = None
    locality: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    email: str | None = None
    extra: tuple[x509.NameAttribute[str], ...] = ()

    def attributes(self) -> list[x509.NameAttribute[str]]:
        pairs = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
        ]
        attrs = [subject_attribute(oid, value) for oid, value in pairs if value]
        attrs.extend(self.extra)
        return attrs

    def trailing(self) -> list[x509.NameAttribute[str]]:
        if self.email:
            if "@" not in self.email:
                raise PolicyViolation("subject-syntax", f"'{self.email}' is not an email address")
            return [subject_attribute(NameOID.EMAIL_ADDRESS, self.email)]
        return []


@dataclass(frozen=True, slots=True)
class CsrForm:
    """What an administrator fills in to request a certificate."""

    common_name: str
    role: Role = "edge"
    cluster_fqdn: str | None = None
    peers: tuple[str, ...] = ()
    include_cluster_names: bool = False
    additional_names: tuple[str, ...] = ()
    ucm_domains: tuple[str, ...] = ()
    ucm_domain_format: UcmFormat = "dns"
    xmpp_domains: tuple[str, ...] = ()
    chat_aliases: tuple[str, ...] = ()
    phone_security_profiles: tuple[str, ...] = ()
    subject: SubjectFields = field(default_factory=SubjectFields)


@dataclass(frozen=True, slots=True)
class NamePlan:
    """The names a request will carry: the CN and the deduplicated, ordered SAN list."""

    common_name: str
    alt_names: tuple[x509.GeneralName, ...]

    @property
    def preview(self) -> list[str]:
        """'Alternative name as it will appear', e.g. ``["DNS:a.example", "IP:10.0.0.1"]``."""
        return [san_text(n) for n in self.alt_names]


def _dns_list(values: Iterable[str], what: str) -> list[x509.GeneralName]:
    return [x509.DNSName(check_dns_name(v, what=what)) for v in values if v.strip()]


def plan_names(form: CsrForm) -> NamePlan:
    """Apply the Expressway SAN rules: CN first, then the other names deduplicated, sorted."""
    if form.role not in ("edge", "core"):
        raise PolicyViolation("role", f"role must be 'edge' or 'core', not '{form.role}'")
    if form.role == "core":
        if form.ucm_domains:
            raise PolicyViolation(
                "role-field",
                "Unified CM registration domains are an edge-role field; this node is 'core'",
            )
        if form.xmpp_domains:
            raise PolicyViolation(
                "role-field", "XMPP federation domains are an edge-role field; this node is 'core'"
            )
    if form.role == "edge" and form.phone_security_profiles:
        raise PolicyViolation(
            "role-field",
            "Unified CM phone security profile names are a core-role field; this node is 'edge'",
        )
    if form.ucm_domain_format not in ("dns", "collab-edge"):
        raise PolicyViolation(
            "ucm-format", "UCM registration domain format must be 'dns' or 'collab-edge'"
        )

    cn_general = parse_san(form.common_name)
    if not isinstance(cn_general, x509.DNSName | x509.IPAddress):
        raise PolicyViolation("common-name", f"common name '{form.common_name}' is not a host name")
    cn_text = str(cn_general.value)

    names: list[x509.GeneralName] = []
    if form.include_cluster_names or form.cluster_fqdn or form.peers:
        if form.include_cluster_names and not form.cluster_fqdn:
            raise PolicyViolation(
                "cluster", "alternative names 'cluster' needs a cluster FQDN; this node has none"
            )
        if form.cluster_fqdn:
            names.append(x509.DNSName(check_fqdn(form.cluster_fqdn, what="cluster FQDN")))
        names.extend(x509.DNSName(check_fqdn(p, what="peer FQDN")) for p in form.peers if p)
    names.extend(parse_san(n) for n in form.additional_names if n.strip())
    for domain in form.ucm_domains:
        if not domain.strip():
            continue
        value = check_dns_name(domain, what="Unified CM registration domain")
        if form.ucm_domain_format == "collab-edge" and not value.startswith("collab-edge."):
            value = f"collab-edge.{value}"
        names.append(x509.DNSName(value))
    names.extend(_dns_list(form.xmpp_domains, "XMPP federation domain"))
    names.extend(_dns_list(form.chat_aliases, "IM and Presence chat node alias"))
    names.extend(
        x509.DNSName(check_fqdn(p, what="phone security profile name"))
        for p in form.phone_security_profiles
        if p.strip()
    )

    seen = {san_text(cn_general)}
    rest: dict[str, x509.GeneralName] = {}
    for name in names:
        key = san_text(name)
        if key not in seen:
            seen.add(key)
            rest[key] = name
    ordered = [cn_general, *sorted(rest.values(), key=san_sort_key)]
    return NamePlan(common_name=cn_text, alt_names=tuple(ordered))


def build_csr(
    key: PrivateKey, form: CsrForm, *, digest: str = "sha256"
) -> tuple[x509.CertificateSigningRequest, NamePlan]:
    """Build and sign the CSR for ``form``. EKU serverAuth + clientAuth is always requested."""
    check_public_key(key.public_key())
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else digest_for(digest)
    plan = plan_names(form)
    attrs = form.subject.attributes()
    if any(a.oid == NameOID.COMMON_NAME for a in attrs):
        raise PolicyViolation("subject-syntax", "give the common name as the CN field only once")
    subject = x509.Name(
        [
            *attrs,
            x509.NameAttribute(NameOID.COMMON_NAME, plan.common_name),
            *form.subject.trailing(),
        ]
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(list(plan.alt_names)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    return builder.sign(key, algorithm), plan


_WEAK_SIGNATURES = {"sha1", "md5", "md2", "md4"}


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    """Refuse a CSR that a CA must not sign: bad self-signature, weak key, SHA-1/MD5."""
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported algorithms surface here
        raise PolicyViolation("csr-signature", f"CSR signature cannot be checked: {exc}") from exc
    if not valid:
        raise PolicyViolation(
            "csr-signature", "the CSR signature is invalid (the request was altered or corrupted)"
        )
    algorithm = csr.signature_hash_algorithm
    if algorithm is not None and algorithm.name in _WEAK_SIGNATURES:
        raise PolicyViolation(
            "weak-digest", f"the CSR is signed with {algorithm.name.upper()}: use SHA-256 or better"
        )
    check_public_key(csr.public_key())
