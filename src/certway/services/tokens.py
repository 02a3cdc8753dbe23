"""PKCS#11 tokens (HSMs) that keep local CAs' keys.

A token is registered under a name with its module path, token label and PIN; the PIN is
sealed with the node's master key like a private key and is never logged, printed nor put in
an error. Registering logs in once first, so a wrong PIN, a missing module or an unknown
token label is refused before anything is stored. Sessions are opened on first use and kept
(one login per token, not one per signature) until the node closes.

``faults`` checks every token that keeps a CA's key (logging in again where a session was
lost, so a token that is back recovers without waiting for a signature); what fails is an
alarm, and only that CA's operations fail meanwhile.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

from cryptography import x509

from certway.clock import Clock
from certway.errors import Conflict, NotFound, PolicyViolation, TokenError
from certway.hsm import TokenEcKey, TokenKeyInfo, TokenRsaKey, TokenSession, same_public_key
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import TokenRepository
from certway.store.topics import Topic, TopicRepository

__all__ = ["SYSTEM_MODULE_DIRS", "TokenFault", "TokenInfo", "TokenTest", "Tokens"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SYSTEM_MODULE_DIRS: tuple[str, ...] = (
    "/usr/lib/softhsm",
    "/usr/lib/x86_64-linux-gnu/softhsm",
    "/usr/lib/aarch64-linux-gnu/softhsm",
    "/usr/lib/pkcs11",
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/local/lib/pkcs11",
)
"""Where a token's module may be when it is registered over the network (API, UI): a
module is a library certway loads into its own process, so a web administrator may pick a
system PKCS#11 module (or one a registered token already uses) but not any file on disk.
``certway token add`` on the node itself may name any module."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    module: str
    token_label: str
    cas: tuple[str, ...]  # the CAs whose key is in this token


@dataclass(frozen=True, slots=True)
class TokenTest:
    """What `token test` found: the key objects in the token, and which CA uses each."""

    name: str
    keys: tuple[TokenKeyInfo, ...]
    used_by: dict[str, str]  # key object id (hex) → CA name


@dataclass(frozen=True, slots=True)
class TokenFault:
    """A token that cannot sign now for the CAs whose key it keeps (never the PIN)."""

    name: str
    cas: tuple[str, ...]
    reason: str


class Tokens:
    """The node's registered PKCS#11 tokens and their open sessions."""

    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._lock = threading.Lock()
        self._sessions: dict[int, TokenSession] = {}

    @audited("token.add")
    def add(
        self, name: str, *, module: str, token_label: str, pin: str, remote: bool = False
    ) -> TokenInfo:
        """Register a token; ``remote``: asked over the network, so the module must be a
        system module or one already in use (``SYSTEM_MODULE_DIRS``)."""
        if remote:
            self._check_remote_module(module)
        if not _NAME_RE.match(name):
            raise PolicyViolation(
                "token-name", f"token name '{name}' must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if not token_label or len(token_label) > 32:
            raise PolicyViolation("token-label", "a PKCS#11 token label has 1-32 characters")
        if not pin:
            raise PolicyViolation("token-pin", "the PIN file is empty")
        with self._store.reading() as session:
            if TokenRepository(session, self._store.vault).by_name(name) is not None:
                raise Conflict(f"a token named '{name}' already exists")
        probe = TokenSession(module, token_label, pin)  # refuses a bad module, label or PIN
        try:
            with self._store.transaction() as session:
                TopicRepository(session).bump(Topic.TOKENS)
                repo = TokenRepository(session, self._store.vault)
                if repo.by_name(name) is not None:
                    raise Conflict(f"a token named '{name}' already exists")
                token_id = repo.add(name, module, token_label, pin, self._clock.now())
                self._audit.note(module=module, token_label=token_label)
        except BaseException:
            probe.close()
            raise
        with self._lock:
            self._sessions[token_id] = probe
        return TokenInfo(name, module, token_label, ())

    def _check_remote_module(self, module: str) -> None:
        real = os.path.realpath(module)
        if any(os.path.dirname(real) == os.path.realpath(d) for d in SYSTEM_MODULE_DIRS):
            return
        if any(os.path.realpath(t.module) == real for t in self.tokens()):
            return
        raise PolicyViolation(
            "token-module",
            f"the PKCS#11 module {module} is not in a system module directory "
            f"({', '.join(SYSTEM_MODULE_DIRS)}) nor used by a registered token: register "
            "such a module on the node itself with 'certway token add'",
        )

    def tokens(self) -> list[TokenInfo]:
        with self._store.reading() as session:
            repo = TokenRepository(session, self._store.vault)
            return [
                TokenInfo(
                    row.name,
                    row.module,
                    row.token_label,
                    tuple(ca for ca, _ in repo.ca_keys(row.id)),
                )
                for row in repo.all()
            ]

    def test(self, name: str) -> TokenTest:
        """Log in (or reuse the session) and list the token's private key objects."""
        token_id = self.token_id(name)
        keys = self.session(token_id).keys()
        with self._store.reading() as session:
            used = {
                key_id: ca
                for ca, key_id in TokenRepository(session, self._store.vault).ca_keys(token_id)
            }
        return TokenTest(name, tuple(keys), used)

    def faults(self) -> list[TokenFault]:
        """The tokens keeping a CA's key that cannot sign now: the session cannot be
        opened (module missing, token absent, PIN refused) or a CA's key is gone."""
        with self._store.reading() as session:
            repo = TokenRepository(session, self._store.vault)
            in_use = [(row.id, row.name, repo.ca_certificates(row.id)) for row in repo.all()]
        found = []
        for token_id, name, ca_keys in in_use:
            if not ca_keys:
                continue
            reasons = []
            try:
                opened = self.session(token_id)
            except TokenError as exc:
                reasons.append(str(exc))
            else:
                for ca, key_id, cert_der in ca_keys:
                    try:
                        key = opened.key(key_id)
                    except TokenError as exc:
                        reasons.append(f"CA '{ca}': {exc}")
                        continue
                    if not same_public_key(key, x509.load_der_x509_certificate(cert_der)):
                        reasons.append(
                            f"CA '{ca}': key {key_id} in the token is not the CA's key "
                            "(its public key differs)"
                        )
            if reasons:
                cas = tuple(ca for ca, _, _ in ca_keys)
                found.append(TokenFault(name, cas, "; ".join(reasons)))
        return found

    # -- for the local CA ----------------------------------------------------------------------
    def token_id(self, name: str) -> int:
        with self._store.reading() as session:
            repo = TokenRepository(session, self._store.vault)
            row = repo.by_name(name)
            if row is None:
                names = [r.name for r in repo.all()]
                known = f"; known tokens: {', '.join(names)}" if names else "; none registered"
                raise NotFound(f"no token named '{name}'{known}")
            return row.id

    def name(self, token_id: int) -> str:
        with self._store.reading() as session:
            row = TokenRepository(session, self._store.vault).by_id(token_id)
            return row.name if row is not None else "?"

    def session(self, token_id: int) -> TokenSession:
        """The open session on a token, logging in on first use."""
        with self._lock:
            found = self._sessions.get(token_id)
            if found is not None:
                return found
            with self._store.reading() as session:
                repo = TokenRepository(session, self._store.vault)
                row = repo.by_id(token_id)
                if row is None:
                    raise NotFound(f"no token with id {token_id}")
                module, label, pin = row.module, row.token_label, repo.pin(row)
            opened = self._sessions[token_id] = TokenSession(module, label, pin)
            return opened

    def generate(
        self, token_id: int, key_type: str, label: str
    ) -> tuple[str, TokenEcKey | TokenRsaKey]:
        return self.session(token_id).generate(key_type, label)

    def key_by_label(self, token_id: int, label: str) -> tuple[str, TokenEcKey | TokenRsaKey]:
        return self.session(token_id).key_by_label(label)

    def key(self, token_id: int, key_id: str) -> TokenEcKey | TokenRsaKey:
        return self.session(token_id).key(key_id)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for opened in sessions:
            opened.close()
