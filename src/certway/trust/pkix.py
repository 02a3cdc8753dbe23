"""RFC 5280 §6.1 path validation for the ``rfc5280`` profile, by pyhanko-certvalidator.

pyhanko-certvalidator is tested against NIST PKITS: path building over several candidate
issuers (names compared by the RFC 5280 §7.1 rules, AKI/SKI, cross-certificates),
basicConstraints and pathLen with the self-issued exception, keyUsage, name constraints of
every form, certificate policies with the §6.1.1 inputs, unknown critical extensions on CA
certificates. It is used here for the path only: revocation is certway's own engine
(``trust.revocation``), so pyhanko's revocation checking is switched off and it never fetches.

pyhanko's API is asynchronous, but with fetching off nothing it awaits ever suspends: the
coroutines are driven to completion in the calling thread (``_run``), so validation works
the same from a worker thread and from inside a running event loop (the SIP listener).

The certificates are converted to ``asn1crypto`` objects once (cached), the trust manager
once per trusted CA list (``PkixAnchors``); see docs/adr/0003-rfc5280-path-validation.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator.authority import CertTrustAnchor, TrustQualifiers
from pyhanko_certvalidator.context import ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    ValidationError,
)
from pyhanko_certvalidator.name_trees import (
    GeneralNameType,
    PKIXSubtrees,
    process_general_subtrees,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    PKIXValidationParams,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import CertificateRegistry, SimpleTrustManager
from pyhanko_certvalidator.validate import async_validate_path

__all__ = [
    "ANY_POLICY",
    "PathProblem",
    "PkixAnchors",
    "PkixInputs",
    "validate_pkix_path",
]

ANY_POLICY = "2.5.29.32.0"
_MAX_PATHS = 16
"""Candidate paths tried before giving up (cross-certified meshes can offer many)."""

_NO_REVOCATION = CertRevTrustPolicy(
    RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.NO_CHECK,
        intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK,
    )
)

T = TypeVar("T")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class PkixInputs:
    """The RFC 5280 §6.1.1 inputs a relying party may set (defaults: accept any policy)."""

    initial_policy_set: frozenset[str] = frozenset({ANY_POLICY})
    """Dotted OIDs of the acceptable certificate policies."""
    initial_explicit_policy: bool = False
    initial_policy_mapping_inhibit: bool = False
    initial_any_policy_inhibit: bool = False

    def params(self) -> PKIXValidationParams:
        policies = frozenset(
            "any_policy" if oid == ANY_POLICY else oid for oid in self.initial_policy_set
        )
        return PKIXValidationParams(
            user_initial_policy_set=policies,
            initial_explicit_policy=self.initial_explicit_policy,
            initial_policy_mapping_inhibit=self.initial_policy_mapping_inhibit,
            initial_any_policy_inhibit=self.initial_any_policy_inhibit,
        )


DEFAULT_INPUTS = PkixInputs()


class PathProblem(Exception):
    """Why no path validated. ``kind``: untrusted | expired | invalid; ``ee``: whether the
    problem is with the end-entity certificate itself."""

    def __init__(self, kind: str, message: str, *, ee: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.ee = ee


def _run(coroutine: Awaitable[T]) -> T:
    """Drive a coroutine that never suspends (no fetching) to its result."""
    assert isinstance(coroutine, Coroutine)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("path validation tried to wait for I/O, which is switched off")


@functools.lru_cache(maxsize=8192)
def as_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    """The same certificate as an ``asn1crypto`` object (parsed once)."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True, slots=True)
class _IpConstraints:
    """A trust anchor's iPAddress name constraints, which certway checks itself:
    pyhanko-certvalidator has no containment check for IP addresses."""

    permitted: tuple[IpNetwork, ...] | None
    excluded: tuple[IpNetwork, ...]

    @classmethod
    def of(cls, cert: x509.Certificate) -> _IpConstraints | None:
        try:
            nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            return None

        def networks(trees: Sequence[x509.GeneralName] | None) -> tuple[IpNetwork, ...]:
            return tuple(
                t.value
                for t in trees or ()
                if isinstance(t, x509.IPAddress)
                and isinstance(t.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            )

        permitted = networks(nc.permitted_subtrees)
        excluded = networks(nc.excluded_subtrees)
        if not permitted and not excluded:
            return None
        return cls(permitted or None, excluded)

    def violation(self, chain: Sequence[x509.Certificate]) -> str | None:
        for cert in chain:
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except (x509.ExtensionNotFound, ValueError):
                continue
            for address in san.get_values_for_type(x509.IPAddress):
                if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
                    continue
                if any(address in net for net in self.excluded if net.version == address.version):
                    return f"IP address {address} is in an excluded subtree of the trusted CA"
                if self.permitted is not None and not any(
                    address in net for net in self.permitted if net.version == address.version
                ):
                    return f"IP address {address} is outside the trusted CA's permitted subtrees"
        return None


def _wildcard_violation(chain: Sequence[x509.Certificate]) -> str | None:
    """A wildcard DNS name in the end entity that could stand for a name a CA of the path
    excludes (``*.example.com`` under an excluded ``bar.example.com``) is refused: RFC 5280
    does not say how constraints apply to wildcards, so the defensive reading is taken."""
    try:
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    wildcards = [n.lower()[2:] for n in san.get_values_for_type(x509.DNSName) if n.startswith("*.")]
    if not wildcards:
        return None
    for ca in chain[1:]:
        try:
            nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        for tree in nc.excluded_subtrees or ():
            if not isinstance(tree, x509.DNSName):
                continue
            excluded = tree.value.lower().lstrip(".")
            for base in wildcards:
                if excluded.endswith("." + base):
                    return (
                        f"the wildcard name *.{base} could stand for {excluded}, which "
                        "a CA of the path excludes"
                    )
    return None


def _anchor(cert: x509.Certificate) -> CertTrustAnchor:
    """A trusted certificate as a trust anchor whose own constraints hold (RFC 5937): the
    name constraints and path length it carries bind every path through it, as OpenSSL and
    the web PKI apply them (iPAddress constraints are checked by ``_IpConstraints``). Its
    certificate policies are not made constraints: an enterprise root listing policies would
    otherwise refuse everything it did not list."""
    asn1 = as_asn1(cert)
    params = None
    constraints = asn1.name_constraints_value
    if constraints is not None:

        def subtrees(value: object) -> PKIXSubtrees | None:
            if not isinstance(value, asn1_x509.GeneralSubtrees):
                return None
            trees = process_general_subtrees(value)
            trees.pop(GeneralNameType.IP_ADDRESS, None)
            return trees

        params = PKIXValidationParams(
            initial_permitted_subtrees=subtrees(constraints["permitted_subtrees"]),
            initial_excluded_subtrees=subtrees(constraints["excluded_subtrees"]),
        )
    quals = TrustQualifiers(max_path_length=asn1.max_path_length, standard_parameters=params)
    return CertTrustAnchor(asn1, quals=quals)


class PkixAnchors:
    """The trusted CA list as pyhanko's trust manager, built once per list."""

    def __init__(self, certificates: Sequence[x509.Certificate]) -> None:
        self._by_der = {c.public_bytes(serialization.Encoding.DER): c for c in certificates}
        self._ip = {der: _IpConstraints.of(c) for der, c in self._by_der.items()}
        self.manager = SimpleTrustManager.build(trust_roots=[_anchor(c) for c in certificates])

    def ip_violation(self, chain: Sequence[x509.Certificate]) -> str | None:
        """Why the path breaks its trust anchor's IP address constraints, if it does."""
        constraints = self._ip.get(chain[-1].public_bytes(serialization.Encoding.DER))
        return constraints.violation(chain[:-1]) if constraints is not None else None

    def certificate(self, der: bytes) -> x509.Certificate | None:
        return self._by_der.get(der)


def _describe(error: ValidationError) -> str:
    text = str(error.args[0] if error.args else error)
    return text.removeprefix("The path could not be validated because ").rstrip(".")


def validate_pkix_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: PkixAnchors,
    at: dt.datetime,
    inputs: PkixInputs = DEFAULT_INPUTS,
) -> list[x509.Certificate]:
    """The validated chain ``[leaf, …, anchor]``; raises PathProblem when none validates.

    Candidate paths are tried in the order pyhanko builds them (trusted issuers first);
    the first that validates wins, else the first failure is reported."""
    by_der = {c.public_bytes(serialization.Encoding.DER): c for c in (leaf, *intermediates)}
    registry = CertificateRegistry.build([as_asn1(c) for c in intermediates])
    context = ValidationContext(
        trust_manager=anchors.manager,
        certificate_registry=registry,
        moment=at,
        revinfo_policy=_NO_REVOCATION,
    )
    params = inputs.params()
    iterator = context.path_builder.async_build_paths_lazy(as_asn1(leaf))
    first: PathProblem | None = None
    try:
        for _ in range(_MAX_PATHS):
            try:
                path: ValidationPath = _run(iterator.__anext__())
            except StopAsyncIteration:
                break
            except PathBuildingError:
                break
            try:
                _run(async_validate_path(context, path, params))
            except (ExpiredError, NotYetValidError) as exc:
                first = first or PathProblem("expired", _describe(exc), ee=exc.is_ee_cert)
                continue
            except PathValidationError as exc:
                first = first or PathProblem("invalid", _describe(exc), ee=exc.is_ee_cert)
                continue
            except ValidationError as exc:
                first = first or PathProblem("invalid", _describe(exc))
                continue
            except NotImplementedError:
                first = first or PathProblem(
                    "invalid",
                    "a CA certificate of the path constrains IP addresses, which certway cannot "
                    "check in an intermediate CA: the path is refused",
                )
                continue
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A certificate the library cannot process (an unusual encoding of an
                # extension): the path is refused, never accepted by accident.
                first = first or PathProblem(
                    "invalid", f"a certificate of the path cannot be processed ({exc})"
                )
                continue
            chain: list[x509.Certificate] = []
            for cert in path.iter_certs(include_root=True):
                der = cert.dump()
                found = by_der.get(der) or anchors.certificate(der)
                if found is None:  # a certificate pyhanko found elsewhere: none is configured
                    found = x509.load_der_x509_certificate(der)
                chain.append(found)
            chain.reverse()
            broken = anchors.ip_violation(chain) or _wildcard_violation(chain)
            if broken is not None:
                first = first or PathProblem("invalid", broken)
                continue
            return chain
    finally:
        _run(iterator.cancel())  # type: ignore[no-untyped-call]
    if first is not None:
        raise first
    raise PathProblem("untrusted", "no path to a trusted CA")
