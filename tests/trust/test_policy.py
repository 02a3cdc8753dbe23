"""Revocation policy objects (RV5)."""

from __future__ import annotations

import pytest

from certway.errors import PolicyViolation
from certway.trust.policy import ADMIN_HTTPS_DEFAULT, SIP_TLS_DEFAULT, Fallback, Scope


def test_defaults_match_the_spec() -> None:
    assert SIP_TLS_DEFAULT.fallback is Fallback.NOT_REVOKED
    assert SIP_TLS_DEFAULT.ocsp and SIP_TLS_DEFAULT.crl and SIP_TLS_DEFAULT.cdp
    assert ADMIN_HTTPS_DEFAULT.scope is Scope.ALL and not ADMIN_HTTPS_DEFAULT.ocsp


def test_with_changes_checks_values() -> None:
    changed = SIP_TLS_DEFAULT.with_changes(scope="peer", fallback="revoked", ocsp=False)
    assert changed.scope is Scope.PEER and changed.strict and not changed.ocsp
    with pytest.raises(PolicyViolation, match="scope must be one of"):
        SIP_TLS_DEFAULT.with_changes(scope="sideways")
    with pytest.raises(PolicyViolation, match="unknown revocation setting"):
        SIP_TLS_DEFAULT.with_changes(colour="blue")
