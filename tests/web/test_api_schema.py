"""Property-based test of the REST API against its own OpenAPI document (schemathesis): any
request the schema allows — and requests it forbids — must never give a server error (5xx),
and every answer, errors included, must be as described: a documented status, media type
and body.

The app is built per test (a fresh node in ``tmp_path``) and its schema loaded in the test
from ``/api/v1/openapi.json``. ``schemathesis.pytest.from_fixture`` would be the usual way,
but schemathesis 4.32 reads ``request.node._nodeid``, which pytest 9 no longer has; so each
operation runs as a pytest subtest with its own hypothesis test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from argon2 import PasswordHasher
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from certway.clock import FixedClock
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW

PASSWORD = "correct horse battery"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
EXAMPLES = 15


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    # argon2id with test-strength parameters: hundreds of authenticated calls stay fast
    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    node = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com")
    node.admins.add("alice", "read-write", PASSWORD)
    node.admins.add("bob", "read-only", PASSWORD)
    # something for the routes with a name in the path to find (see KNOWN)
    node.identities.add_domain("conf.example.com")
    node.local_ca.create_root("lab", "CN=Lab Root")
    yield create_admin_app(node, secure_cookies=False)
    node.close()


KNOWN: dict[str, dict[str, object]] = {
    "/api/v1/local-ca/{name}": {"name": "lab"},
    "/api/v1/domains/{name}": {"name": "conf.example.com"},
    "/api/v1/admins/{name}": {"name": "bob"},
    "/api/v1/server-cert/restore/{version}": {"version": 1},
}
"""Path parameters naming things that exist, so fuzzed bodies reach the services (random
names mostly stop at 404)."""


def known_parameters(path: str, node_fingerprint: str) -> dict[str, object] | None:
    if path.startswith("/api/v1/trusted-cas/{fingerprint}"):
        return {"fingerprint": node_fingerprint}
    for prefix, params in KNOWN.items():
        if path.startswith(prefix):
            return params
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_no_server_errors(app: FastAPI, subtests: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40  # the whole API, nothing excluded
    fingerprint = app.state.web.node.trusted_cas.entries()[0].fingerprint  # the factory CA
    for operation in operations:
        strategies = [
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        ]
        known = known_parameters(operation.path, fingerprint)
        if known is not None:
            strategies.append(operation.as_strategy(path_parameters=known))
        cases = st.one_of(strategies)

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        with subtests.test(msg=operation.label):
            no_server_error()
