"""Rendering X.509 extensions (of certificates, CSRs, CRLs and CRL entries) as the text
``openssl -text`` prints and as JSON-serialisable values, with the general names in them.

Reason codes print with OpenSSL's labels (``Key Compromise``) in the text and with their
RFC 5280 names (``keyCompromise``, :data:`certway.pki.crl.REASON_NAMES`) in the JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from certway.pki.crl import REASON_NAMES
from certway.pki.text import (
    colon_hex,
    format_name,
    hex_block,
    iso_time,
    oid_name,
    openssl_time,
    serial_hex,
)

__all__ = ["extensions_dict", "extensions_text"]

_EXTENSION_NAMES: dict[type[x509.ExtensionType], str] = {
    x509.BasicConstraints: "X509v3 Basic Constraints",
    x509.KeyUsage: "X509v3 Key Usage",
    x509.ExtendedKeyUsage: "X509v3 Extended Key Usage",
    x509.SubjectAlternativeName: "X509v3 Subject Alternative Name",
    x509.IssuerAlternativeName: "X509v3 Issuer Alternative Name",
    x509.SubjectKeyIdentifier: "X509v3 Subject Key Identifier",
    x509.AuthorityKeyIdentifier: "X509v3 Authority Key Identifier",
    x509.CRLDistributionPoints: "X509v3 CRL Distribution Points",
    x509.FreshestCRL: "X509v3 Freshest CRL",
    x509.AuthorityInformationAccess: "Authority Information Access",
    x509.SubjectInformationAccess: "Subject Information Access",
    x509.CertificatePolicies: "X509v3 Certificate Policies",
    x509.CRLNumber: "X509v3 CRL Number",
    x509.DeltaCRLIndicator: "X509v3 Delta CRL Indicator",
    x509.CRLReason: "X509v3 CRL Reason Code",
    x509.InvalidityDate: "Invalidity Date",
    x509.CertificateIssuer: "X509v3 Certificate Issuer",
    x509.IssuingDistributionPoint: "X509v3 Issuing Distribution Point",
    x509.NameConstraints: "X509v3 Name Constraints",
    x509.PolicyConstraints: "X509v3 Policy Constraints",
    x509.InhibitAnyPolicy: "X509v3 Inhibit Any Policy",
    x509.OCSPNoCheck: "OCSP No Check",
    x509.TLSFeature: "TLS Feature",
    x509.PrecertificateSignedCertificateTimestamps: "CT Precertificate SCTs",
    x509.SignedCertificateTimestamps: "CT Certificate SCTs",
    x509.PrecertPoison: "CT Precertificate Poison",
    x509.OCSPNonce: "OCSP Nonce",
    x509.MSCertificateTemplate: "Microsoft Certificate Template",
}

_KEY_USAGES = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Sign"),
    ("crl_sign", "CRL Sign"),
)

_EKU_NAMES: dict[x509.ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS Web Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS Web Client Authentication",
    ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "E-mail Protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP Signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Extended Key Usage",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "Microsoft Smartcard Login",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "Signing KDC Response",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsec Internet Key Exchange",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.20"): "SIP Domain",
}

#: How ``openssl -text`` labels reason codes (text output only).
_OPENSSL_REASON_LABELS: dict[x509.ReasonFlags, str] = {
    x509.ReasonFlags.unspecified: "Unspecified",
    x509.ReasonFlags.key_compromise: "Key Compromise",
    x509.ReasonFlags.ca_compromise: "CA Compromise",
    x509.ReasonFlags.affiliation_changed: "Affiliation Changed",
    x509.ReasonFlags.superseded: "Superseded",
    x509.ReasonFlags.cessation_of_operation: "Cessation Of Operation",
    x509.ReasonFlags.certificate_hold: "Certificate Hold",
    x509.ReasonFlags.privilege_withdrawn: "Privilege Withdrawn",
    x509.ReasonFlags.aa_compromise: "AA Compromise",
    x509.ReasonFlags.remove_from_crl: "Remove From CRL",
}

_ACCESS_METHODS: dict[x509.ObjectIdentifier, str] = {
    AuthorityInformationAccessOID.OCSP: "OCSP",
    AuthorityInformationAccessOID.CA_ISSUERS: "CA Issuers",
}

_UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def _general_name(name: x509.GeneralName) -> tuple[str, str, str]:
    """(text label, JSON type, value) of a GeneralName."""
    if isinstance(name, x509.DNSName):
        return "DNS", "dns", name.value
    if isinstance(name, x509.IPAddress):
        return "IP Address", "ip", str(name.value)
    if isinstance(name, x509.RFC822Name):
        return "email", "email", name.value
    if isinstance(name, x509.UniformResourceIdentifier):
        return "URI", "uri", name.value
    if isinstance(name, x509.DirectoryName):
        return "DirName", "dirname", format_name(name.value)
    if isinstance(name, x509.RegisteredID):
        return "Registered ID", "rid", oid_name(name.value)
    if isinstance(name, x509.OtherName):
        label = "UPN" if name.type_id == _UPN_OID else name.type_id.dotted_string
        return "othername", "othername", f"{label}:{name.value.hex(':')}"
    return "unknown", "unknown", repr(name)


def _gn_text(name: x509.GeneralName) -> str:
    label, _, value = _general_name(name)
    return f"{label}:{value}"


def _gn_dict(name: x509.GeneralName) -> dict[str, str]:
    _, kind, value = _general_name(name)
    return {"type": kind, "value": value}


def _distribution_points(
    points: Iterable[x509.DistributionPoint],
) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    values: list[dict[str, Any]] = []
    for point in points:
        value: dict[str, Any] = {}
        if point.full_name is not None:
            lines.append("Full Name:")
            lines.extend(f"  {_gn_text(n)}" for n in point.full_name)
            value["full_name"] = [_gn_dict(n) for n in point.full_name]
        if point.relative_name is not None:
            relative = format_name(x509.Name([point.relative_name]))
            lines.append(f"Relative Name: {relative}")
            value["relative_name"] = relative
        if point.reasons is not None:
            reasons = sorted(_OPENSSL_REASON_LABELS[r] for r in point.reasons)
            lines.append(f"Reasons: {', '.join(reasons)}")
            value["reasons"] = sorted(REASON_NAMES[r] for r in point.reasons)
        if point.crl_issuer is not None:
            lines.append("CRL Issuer:")
            lines.extend(f"  {_gn_text(n)}" for n in point.crl_issuer)
            value["crl_issuer"] = [_gn_dict(n) for n in point.crl_issuer]
        values.append(value)
    return lines, values


def _policies(policies: x509.CertificatePolicies) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    values: list[dict[str, Any]] = []
    for policy in policies:
        lines.append(f"Policy: {oid_name(policy.policy_identifier)}")
        value: dict[str, Any] = {"oid": policy.policy_identifier.dotted_string, "cps": []}
        notices: list[dict[str, Any]] = []
        for qualifier in policy.policy_qualifiers or []:
            if isinstance(qualifier, str):
                lines.append(f"  CPS: {qualifier}")
                value["cps"].append(qualifier)
                continue
            lines.append("  User Notice:")
            notice: dict[str, Any] = {"explicit_text": qualifier.explicit_text}
            if qualifier.notice_reference is not None:
                ref = qualifier.notice_reference
                numbers = ", ".join(str(n) for n in ref.notice_numbers)
                lines.append(f"    Organization: {ref.organization}")
                lines.append(f"    Number{'s' if len(ref.notice_numbers) != 1 else ''}: {numbers}")
                notice["organization"] = ref.organization
                notice["notice_numbers"] = list(ref.notice_numbers)
            if qualifier.explicit_text is not None:
                lines.append(f"    Explicit Text: {qualifier.explicit_text}")
            notices.append(notice)
        if notices:
            value["user_notices"] = notices
        values.append(value)
    return lines, values


def _key_usage(usage: x509.KeyUsage) -> list[str]:
    names = [label for attr, label in _KEY_USAGES if getattr(usage, attr)]
    if usage.key_agreement:
        if usage.encipher_only:
            names.append("Encipher Only")
        if usage.decipher_only:
            names.append("Decipher Only")
    return names


def _render_extension(value: x509.ExtensionType) -> tuple[list[str], Any]:
    """Text lines and JSON value of one extension's value."""
    if isinstance(value, x509.BasicConstraints):
        text = f"CA:{'TRUE' if value.ca else 'FALSE'}"
        if value.path_length is not None:
            text += f", pathlen:{value.path_length}"
        return [text], {"ca": value.ca, "path_length": value.path_length}
    if isinstance(value, x509.KeyUsage):
        names = _key_usage(value)
        return [", ".join(names)], names
    if isinstance(value, x509.ExtendedKeyUsage):
        items = [{"oid": o.dotted_string, "name": _EKU_NAMES.get(o) or oid_name(o)} for o in value]
        return [", ".join(i["name"] for i in items)], items
    if isinstance(
        value, x509.SubjectAlternativeName | x509.IssuerAlternativeName | x509.CertificateIssuer
    ):
        return [", ".join(_gn_text(n) for n in value)], [_gn_dict(n) for n in value]
    if isinstance(value, x509.SubjectKeyIdentifier):
        return [colon_hex(value.digest)], colon_hex(value.digest)
    if isinstance(value, x509.AuthorityKeyIdentifier):
        lines: list[str] = []
        aki: dict[str, Any] = {"key_identifier": None}
        if value.key_identifier is not None:
            aki["key_identifier"] = colon_hex(value.key_identifier)
            lines.append(f"keyid:{aki['key_identifier']}")
        if value.authority_cert_issuer is not None:
            lines.extend(_gn_text(n) for n in value.authority_cert_issuer)
            aki["issuer"] = [_gn_dict(n) for n in value.authority_cert_issuer]
        if value.authority_cert_serial_number is not None:
            lines.append(f"serial:{serial_hex(value.authority_cert_serial_number)}")
            aki["serial"] = serial_hex(value.authority_cert_serial_number)
        return lines, aki
    if isinstance(value, x509.CRLDistributionPoints | x509.FreshestCRL):
        return _distribution_points(value)
    if isinstance(value, x509.AuthorityInformationAccess | x509.SubjectInformationAccess):
        lines = []
        access: list[dict[str, Any]] = []
        for desc in value:
            method = _ACCESS_METHODS.get(desc.access_method) or oid_name(desc.access_method)
            lines.append(f"{method} - {_gn_text(desc.access_location)}")
            access.append({"method": method, "location": _gn_dict(desc.access_location)})
        return lines, access
    if isinstance(value, x509.CertificatePolicies):
        return _policies(value)
    if isinstance(value, x509.CRLNumber | x509.DeltaCRLIndicator):
        return [str(value.crl_number)], value.crl_number
    if isinstance(value, x509.CRLReason):
        return [_OPENSSL_REASON_LABELS[value.reason]], REASON_NAMES[value.reason]
    if isinstance(value, x509.InvalidityDate):
        when = value.invalidity_date_utc
        return [openssl_time(when)], iso_time(when)
    if isinstance(value, x509.IssuingDistributionPoint):
        return _issuing_distribution_point(value)
    if isinstance(value, x509.NameConstraints):
        lines = []
        constraints: dict[str, Any] = {}
        for label, subtrees in (
            ("Permitted", value.permitted_subtrees),
            ("Excluded", value.excluded_subtrees),
        ):
            if subtrees is not None:
                lines.append(f"{label}:")
                lines.extend(f"  {_gn_text(n)}" for n in subtrees)
                constraints[label.lower()] = [_gn_dict(n) for n in subtrees]
        return lines, constraints
    if isinstance(value, x509.PolicyConstraints):
        lines = []
        if value.require_explicit_policy is not None:
            lines.append(f"Require Explicit Policy:{value.require_explicit_policy}")
        if value.inhibit_policy_mapping is not None:
            lines.append(f"Inhibit Policy Mapping:{value.inhibit_policy_mapping}")
        return lines, {
            "require_explicit_policy": value.require_explicit_policy,
            "inhibit_policy_mapping": value.inhibit_policy_mapping,
        }
    if isinstance(value, x509.InhibitAnyPolicy):
        return [str(value.skip_certs)], value.skip_certs
    if isinstance(value, x509.OCSPNoCheck | x509.PrecertPoison):
        return ["NULL"], None
    if isinstance(value, x509.TLSFeature):
        names = [feature.name for feature in value]
        return [", ".join(names)], names
    if isinstance(
        value, x509.PrecertificateSignedCertificateTimestamps | x509.SignedCertificateTimestamps
    ):
        scts = [
            {
                "log_id": colon_hex(sct.log_id),
                "timestamp": iso_time(sct.timestamp.replace(tzinfo=dt.UTC)),
            }
            for sct in value
        ]
        return [f"Log ID {s['log_id']} at {s['timestamp']}" for s in scts], scts
    if isinstance(value, x509.OCSPNonce):
        return [colon_hex(value.nonce)], colon_hex(value.nonce)
    if isinstance(value, x509.MSCertificateTemplate):
        template: dict[str, Any] = {
            "template_id": value.template_id.dotted_string,
            "major_version": value.major_version,
            "minor_version": value.minor_version,
        }
        return [f"Template: {value.template_id.dotted_string}"], template
    if isinstance(value, x509.UnrecognizedExtension):
        return hex_block(value.value, 0), {"der": value.value.hex()}
    der = value.public_bytes()
    return hex_block(der, 0), {"der": der.hex()}


def _issuing_distribution_point(
    value: x509.IssuingDistributionPoint,
) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    idp: dict[str, Any] = {}
    if value.full_name is not None:
        lines.append("Full Name:")
        lines.extend(f"  {_gn_text(n)}" for n in value.full_name)
        idp["full_name"] = [_gn_dict(n) for n in value.full_name]
    if value.relative_name is not None:
        idp["relative_name"] = format_name(x509.Name([value.relative_name]))
        lines.append(f"Relative Name: {idp['relative_name']}")
    flags = (
        ("only_contains_user_certs", "Only User Certificates"),
        ("only_contains_ca_certs", "Only CA Certificates"),
        ("only_contains_attribute_certs", "Only Attribute Certificates"),
        ("indirect_crl", "Indirect CRL"),
    )
    for attr, label in flags:
        flag = bool(getattr(value, attr))
        idp[attr] = flag
        if flag:
            lines.append(label)
    if value.only_some_reasons is not None:
        lines.append(
            "Only Some Reasons: "
            + ", ".join(sorted(_OPENSSL_REASON_LABELS[r] for r in value.only_some_reasons))
        )
        idp["only_some_reasons"] = sorted(REASON_NAMES[r] for r in value.only_some_reasons)
    return lines, idp


def _extension_name(ext: x509.Extension[x509.ExtensionType]) -> str:
    name = _EXTENSION_NAMES.get(type(ext.value))
    return name if name is not None else oid_name(ext.oid)


def extensions_text(extensions: x509.Extensions, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for ext in extensions:
        critical = " critical" if ext.critical else ""
        lines.append(f"{pad}{_extension_name(ext)}:{critical}")
        text, _ = _render_extension(ext.value)
        lines.extend(f"{pad}    {line}" for line in text)
    return lines


def extensions_dict(extensions: x509.Extensions) -> list[dict[str, Any]]:
    items = []
    for ext in extensions:
        _, value = _render_extension(ext.value)
        items.append(
            {
                "oid": ext.oid.dotted_string,
                "name": _extension_name(ext).removeprefix("X509v3 "),
                "critical": ext.critical,
                "value": value,
            }
        )
    return items
