"""The client certificate: the server certificate by default, an uploaded one, or a copy
of the server certificate; it needs clientAuth when it has an extended key usage."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certway.errors import NotFound, PolicyViolation
from certway.services.audit import audited
from certway.services.identities.model import IdentityInfo
from certway.services.identities.slots import Slots
from certway.store.repositories import SlotRepository

__all__ = ["ClientCertificate", "require_client_auth"]


class ClientCertificate(Slots):
    """Copy the server certificate into the client slot."""

    @audited("client-cert.copy-server", target=lambda: "client certificate")
    def copy_server_to_client(self) -> IdentityInfo:
        """Use the server certificate as the client certificate; needs clientAuth."""
        with self._store.reading() as session:
            found = self._active_row(SlotRepository(session), "server", "")
        if found is None:
            raise NotFound("the server certificate has no certificate yet")
        require_client_auth(x509.load_der_x509_certificate(found[1].certificate_der))
        self._activate_existing("client", "", found[1], "copy of server certificate")
        return self.info("client")


def require_client_auth(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if (
        ExtendedKeyUsageOID.CLIENT_AUTH not in eku
        and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        raise PolicyViolation(
            "missing-client-auth",
            "the client certificate's extended key usage lacks clientAuth (TLS Web Client "
            "Authentication)",
        )
