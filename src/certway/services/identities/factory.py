"""First start: a temporary CA, trusted and in the factory list, and a server
certificate from it so that the node serves TLS before an administrator replaces it."""

from __future__ import annotations

import ipaddress
import secrets

from cryptography import x509
from cryptography.x509.oid import NameOID

from certway.pki.keys import generate_key
from certway.services.identities.model import TEMP_CA_SETTING
from certway.services.identities.slots import Slots
from certway.services.local_ca import CaSettings
from certway.store.repositories import SettingsRepository

TEMPORARY_CA = "temporary-ca"
FACTORY_DAYS = 365
"""The factory server certificate exists to be replaced: it lives a year at most."""

__all__ = ["FACTORY_DAYS", "TEMPORARY_CA", "FactorySetup"]


class FactorySetup(Slots):
    """The factory (temporary) server certificate."""

    def factory_setup(self) -> bool:
        """On first start: a temporary CA (trusted, in the factory list) and a server
        certificate from it for the node FQDN, localhost and 127.0.0.1. Idempotent."""
        if self.active("server") is not None:
            return False
        config = self._node.get()
        temp = self.temporary_ca()
        if temp is None:
            suffix = secrets.token_hex(4)
            name = TEMPORARY_CA if not self._ca_exists(TEMPORARY_CA) else f"{TEMPORARY_CA}-{suffix}"
            info = self._local_ca.create_root(
                name,
                f"/O=certway/OU=Temporary CA/CN=certway temporary CA {suffix}",
                key_type="ec:p256",
                days=3650,
                settings=CaSettings(node_urls=False),
            )
            temp = self._local_ca.certificate(info.name)
            with self._store.transaction() as session:
                SettingsRepository(session).set(TEMP_CA_SETTING, info.name)
        self._trusted.add_factory(temp)
        key = generate_key("ec:p256")
        names: list[x509.GeneralName] = [
            x509.DNSName(config.fqdn),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        with self._store.reading() as session:
            ca_name = SettingsRepository(session).get(TEMP_CA_SETTING)
        assert isinstance(ca_name, str)
        issued = self._local_ca.issue_certificate(
            ca_name,
            key.public_key(),
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, config.fqdn)]),
            alt_names=names,
            days=FACTORY_DAYS,
        )
        self._activate("server", "", issued.certificate, issued.chain, key, None, "factory", [])
        return True

    def _ca_exists(self, name: str) -> bool:
        return any(c.name == name for c in self._local_ca.cas())
