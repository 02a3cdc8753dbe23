"""Administrator accounts: local accounts with an access level; argon2id hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from certway.clock import Clock
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import AdminRepository

__all__ = ["ACCESS_LEVELS", "MIN_PASSWORD", "AdminAccounts", "AdminInfo"]

ACCESS_LEVELS = ("read-write", "read-only")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # argon2id with the library's current defaults


@dataclass(frozen=True, slots=True)
class AdminInfo:
    name: str
    access: str

    @property
    def can_write(self) -> bool:
        return self.access == "read-write"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "access": self.access}


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PolicyViolation(
            "password", f"the password must have at least {MIN_PASSWORD} characters"
        )


class AdminAccounts:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def accounts(self) -> list[AdminInfo]:
        with self._store.reading() as session:
            return [AdminInfo(r.name, r.access) for r in AdminRepository(session).all()]

    def get(self, name: str) -> AdminInfo | None:
        with self._store.reading() as session:
            row = AdminRepository(session).get(name)
            return AdminInfo(row.name, row.access) if row else None

    def credential_stamp(self, name: str) -> str | None:
        """A value that changes whenever the account's password or access level does (a
        digest of both), or None when the account is gone: sessions compare it."""
        with self._store.reading() as session:
            row = AdminRepository(session).get(name)
            if row is None:
                return None
            return hashlib.sha256(f"{row.access}\0{row.password_hash}".encode()).hexdigest()

    @audited("admin.add")
    def add(self, name: str, access: str, password: str) -> AdminInfo:
        if not _NAME_RE.match(name):
            raise PolicyViolation(
                "admin-name", f"account name '{name}' must be 1-64 letters, digits, . _ @ -"
            )
        if access not in ACCESS_LEVELS:
            raise PolicyViolation(
                "access", f"access must be read-write or read-only, not '{access}'"
            )
        _check_password(password)
        digest = _HASHER.hash(password)
        now = self._clock.now()
        with self._store.transaction() as session:
            accounts = AdminRepository(session)
            if accounts.get(name) is not None:
                raise Conflict(f"an account named '{name}' already exists")
            accounts.add(name, access, digest, now)
            self._audit.note(name=name, access=access)
        return AdminInfo(name, access)

    @audited("admin.passwd")
    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        digest = _HASHER.hash(password)
        with self._store.transaction() as session:
            row = AdminRepository(session).get(name)
            if row is None:
                raise NotFound(f"no account named '{name}'")
            row.password_hash = digest
            row.updated_at = self._clock.now()

    @audited("admin.access")
    def set_access(self, name: str, access: str) -> AdminInfo:
        """Change an account's access level; the last read-write account keeps its own."""
        if access not in ACCESS_LEVELS:
            raise PolicyViolation(
                "access", f"access must be read-write or read-only, not '{access}'"
            )
        with self._store.transaction() as session:
            accounts = AdminRepository(session)
            row = accounts.get(name)
            if row is None:
                raise NotFound(f"no account named '{name}'")
            if (
                row.access == "read-write"
                and access != "read-write"
                and not accounts.another_with_access("read-write", name)
            ):
                raise Conflict(
                    "this is the last read-write account: give another account read-write "
                    "access before making it read-only"
                )
            row.access = access
            row.updated_at = self._clock.now()
            self._audit.note(access=access)
        return AdminInfo(name, access)

    @audited("admin.remove")
    def remove(self, name: str) -> None:
        with self._store.transaction() as session:
            accounts = AdminRepository(session)
            row = accounts.get(name)
            if row is None:
                raise NotFound(f"no account named '{name}'")
            if row.access == "read-write" and not accounts.another_with_access("read-write", name):
                raise Conflict(
                    "this is the last read-write account: add another one before removing it"
                )
            accounts.delete(row)

    def verify(self, name: str, password: str) -> AdminInfo | None:
        """The account when the password is right, else None (same cost either way). Only
        reads: a login never waits for the database's write lock nor takes it."""
        with self._store.reading() as session:
            row = AdminRepository(session).get(name)
            stored = row.password_hash if row else None
            info = AdminInfo(row.name, row.access) if row else None
        try:
            if stored is None:
                _HASHER.hash(password)  # spend the same time for unknown names
                return None
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return info

    def login_failed(self, name: str) -> None:
        """Record a refused password login for ``name`` in the audit log, as the current
        actor (the adapter says from where). Never the password."""
        self._audit.record("admin.login", name, "refused", {"error": "wrong user name or password"})

    def ensure_initial(self) -> str | None:
        """On first start: an 'admin' read-write account with a generated password, returned
        once so the caller can show it; None when accounts exist already."""
        if self.accounts():
            return None
        password = secrets.token_urlsafe(15)
        self.add("admin", "read-write", password)
        return password
