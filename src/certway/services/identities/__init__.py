"""The node's own certificates: server certificate, client certificate
and per-domain (SNI) certificates, each a *slot* with numbered versions and at most one
pending CSR.

One module per use case, on the storage they share (``slots``) and the values they return
(``model``):

- ``csr``: the CSR form, its preview, the pending CSR of a slot;
- ``certificates``: uploading a certificate and restoring an earlier version;
- ``client``: the client certificate, a copy of the server certificate;
- ``domains``: domain slots, and one domain shown with its certificate and pending CSR;
- ``factory``: the temporary CA and the first server certificate;
- ``sni``: the certificate for a TLS ClientHello's server name.

``Identities`` brings them together as the one service the node, the adapters and the
listeners use (``node.identities``).
"""

from __future__ import annotations

from certway.services.identities.certificates import CertificateUploads
from certway.services.identities.client import ClientCertificate
from certway.services.identities.csr import CsrRequests
from certway.services.identities.domains import DomainCertificates
from certway.services.identities.factory import TEMPORARY_CA, FactorySetup
from certway.services.identities.model import (
    CSR_ALT_NAMES,
    CSR_COMMON_NAMES,
    ActiveIdentity,
    CsrOptions,
    DomainDetail,
    DomainInfo,
    IdentityInfo,
    IdentityKind,
    PendingCsrInfo,
    UploadResult,
    VersionInfo,
    normalise_domain,
)
from certway.services.identities.sni import SniLookup

__all__ = [
    "CSR_ALT_NAMES",
    "CSR_COMMON_NAMES",
    "TEMPORARY_CA",
    "ActiveIdentity",
    "CsrOptions",
    "DomainDetail",
    "DomainInfo",
    "Identities",
    "IdentityInfo",
    "IdentityKind",
    "PendingCsrInfo",
    "UploadResult",
    "VersionInfo",
    "normalise_domain",
]


class Identities(
    DomainCertificates,  # before CsrRequests: it shows a domain's pending CSR
    CsrRequests,
    CertificateUploads,
    ClientCertificate,
    FactorySetup,
    SniLookup,
):
    """Server, client and domain certificates of this node."""
