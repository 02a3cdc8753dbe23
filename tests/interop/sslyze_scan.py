"""Scan one TLS server with sslyze and check it against a Mozilla TLS configuration.

Run by ``test_sslyze.py`` in the environment that has sslyze (``make deps-sslyze``: sslyze
pins a ``cryptography`` older than certway's trust engine needs, so it has its own).
Prints one JSON object: ``{"issues": {name: text}}`` (empty when compliant), or
``{"error": text}`` when the scan could not be completed.

    python sslyze_scan.py HOST PORT SERVER_NAME intermediate|modern [CERT KEY]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sslyze import (
    ClientAuthenticationCredentials,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def main(argv: list[str]) -> dict[str, object]:
    host, port, server_name, config = argv[:4]
    credentials = None
    if len(argv) == 6:
        credentials = ClientAuthenticationCredentials(
            certificate_chain_path=Path(argv[4]), key_path=Path(argv[5])
        )
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=host, port=int(port), ip_address=host),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=server_name,
            tls_client_auth_credentials=credentials,
            network_timeout=10,
        ),
        # Only what the Mozilla checker reads: the scan stays short.
        scan_commands=set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    scanner.queue_scans([request])
    for result in scanner.get_results():
        if result.scan_status is not ServerScanStatusEnum.COMPLETED:
            return {"error": f"connectivity: {result.connectivity_error_trace}"}
        try:
            check_server_against_tls_configuration(
                result, MozillaTlsConfiguration.get(TlsConfigurationEnum(config))
            )
        except ServerNotCompliantWithTlsConfiguration as exc:
            return {"issues": exc.issues}
        except ServerScanResultIncomplete as exc:
            errors = {
                name: str(getattr(result.scan_result, name.value).error_trace)[-2000:]
                for name in SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER
                if getattr(result.scan_result, name.value).error_trace is not None
            }
            return {"error": f"incomplete: {exc}: {errors}"}
        return {"issues": {}}
    return {"error": "no scan result"}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
