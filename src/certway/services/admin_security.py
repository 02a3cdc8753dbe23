"""Admin client-certificate security: not required / certificate validation /
certificate-based authentication, with the regex + username format."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from certway.errors import PolicyViolation
from certway.services.admins import AdminAccounts, AdminInfo
from certway.services.api_tokens import RECHECK_SECONDS
from certway.services.audit import Audit, audited
from certway.services.client_check import CheckReport, ClientCheck
from certway.store.db import Store
from certway.store.repositories import SettingsRepository
from certway.store.topics import Topic, TopicRepository
from certway.trust.identity import DEFAULT_FORMAT, DEFAULT_REGEX, check_format, compile_regex

__all__ = ["AdminSecurity", "CertAuthResult", "ClientCertSecurity", "Mode"]

_KEY = "admin.client_cert"


class Mode(StrEnum):
    NOT_REQUIRED = "not-required"
    VALIDATION = "certificate-validation"
    AUTHENTICATION = "certificate-based-authentication"


@dataclass(frozen=True, slots=True)
class ClientCertSecurity:
    mode: Mode = Mode.NOT_REQUIRED
    regex: str = DEFAULT_REGEX
    format: str = DEFAULT_FORMAT

    def as_dict(self) -> dict[str, str]:
        return {"mode": self.mode.value, "regex": self.regex, "format": self.format}


@dataclass(frozen=True)
class CertAuthResult:
    """The outcome for one connection's client certificate."""

    allowed: bool
    reason: str
    account: AdminInfo | None = None
    report: CheckReport | None = None


class AdminSecurity:
    def __init__(
        self, store: Store, audit: Audit, admins: AdminAccounts, check: ClientCheck
    ) -> None:
        self._store = store
        self._audit = audit
        self._admins = admins
        self._check = check
        self._cached: tuple[ClientCertSecurity, float] | None = None  # settings, read at

    def get(self) -> ClientCertSecurity:
        """The settings; every admin request asks, so they are read again at most
        ``RECHECK_SECONDS`` after the last read: a change made here applies at once, one made
        by another process (the CLI, a cluster peer) within that time."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < RECHECK_SECONDS:
            return cached[0]
        read_at = time.monotonic()
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_KEY)
        config = ClientCertSecurity()
        if isinstance(raw, dict):
            config = ClientCertSecurity(
                Mode(raw.get("mode", Mode.NOT_REQUIRED.value)),
                str(raw.get("regex", DEFAULT_REGEX)),
                str(raw.get("format", DEFAULT_FORMAT)),
            )
        self._cached = (config, read_at)
        return config

    @audited("admin-security.set", target=lambda *a, **k: "client certificate security")
    def set(
        self,
        *,
        mode: str | None = None,
        regex: str | None = None,
        fmt: str | None = None,
        current_certificate: bytes | None = None,
        force: bool = False,
        guard: bool = False,
    ) -> ClientCertSecurity:
        """Change the mode. Turning on certificate-based authentication is refused unless
        ``current_certificate`` (the admin's own browser certificate) maps to a read-write
        account — so nobody locks themselves out — or ``force`` (CLI recovery).

        ``guard``: the change comes over an admin connection that presents
        ``current_certificate`` (None: no certificate), as from the web UI or the API; then
        certificate validation too is refused unless that certificate is accepted, as
        Expressway warns before it: the connection making the change would be refused."""
        config = self.get()
        if mode is not None:
            try:
                config = replace(config, mode=Mode(mode))
            except ValueError:
                allowed = ", ".join(m.value for m in Mode)
                raise PolicyViolation("mode", f"mode must be one of {allowed}") from None
        if regex is not None:
            config = replace(config, regex=regex)
        if fmt is not None:
            config = replace(config, format=fmt)
        check_format(config.format, compile_regex(config.regex))
        if config.mode is Mode.VALIDATION and guard and not force:
            self._refuse_lockout(config, current_certificate)
        if config.mode is Mode.AUTHENTICATION and not force:
            if current_certificate is None:
                raise PolicyViolation(
                    "lockout",
                    "certificate-based authentication turns password login off: confirm it "
                    "from a browser whose certificate maps to a read-write account",
                )
            result = self.authenticate(current_certificate, config)
            if result.account is None or not result.account.can_write:
                raise PolicyViolation(
                    "lockout",
                    "refused: your certificate would not log you in as a read-write "
                    f"administrator ({result.reason})",
                )
        self._cached = None
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_KEY, config.as_dict())
            TopicRepository(session).bump(Topic.ADMIN_SECURITY)
        self._cached = None
        return config

    def _refuse_lockout(self, config: ClientCertSecurity, certificate: bytes | None) -> None:
        """Refuse ``config`` when it would refuse the connection asking for it."""
        label = "certificate validation"
        if certificate is None:
            raise PolicyViolation(
                "lockout",
                f"refused: {label} would lock you out: the connection making this change "
                "presents no client certificate. Connect with a client certificate issued by "
                "a trusted CA (import it into the browser), then change the mode",
            )
        result = self.authenticate(certificate, config)
        if not result.allowed:
            raise PolicyViolation(
                "lockout",
                f"refused: {label} would lock you out: your client certificate would not be "
                f"accepted ({result.reason})",
            )

    def reset(self) -> ClientCertSecurity:
        """CLI recovery: back to 'not required'."""
        return self.set(mode=Mode.NOT_REQUIRED.value, force=True)

    def authenticate(
        self,
        certificate_pem: bytes | None,
        config: ClientCertSecurity | None = None,
        *,
        resolve: Callable[[str], AdminInfo | None] | None = None,
    ) -> CertAuthResult:
        """Judge a connection's client certificate under ``config`` (default: current).
        ``resolve`` finds the account of a mapped username (default: the local accounts; the
        admin app passes the admin-auth source's, which may ask the LDAP server)."""
        config = config or self.get()
        if config.mode is Mode.NOT_REQUIRED:
            return CertAuthResult(True, "client certificates are not required")
        if not certificate_pem:
            return CertAuthResult(False, "this page needs a client certificate and none was sent")
        mapping = config.mode is Mode.AUTHENTICATION  # the username comes from the same check
        try:
            report = self._check.check(
                certificate_pem,
                purpose="client",
                service="admin-https",
                regex=config.regex if mapping else None,
                fmt=config.format if mapping else None,
            )
        except PolicyViolation as exc:
            if exc.code not in ("regex", "username-format"):
                raise
            # A stored regex the engine refuses (saved by an older version): nobody is let
            # in by it, and the reason says why.
            return CertAuthResult(
                False, f"the username regex or format of this server cannot be used: {exc}"
            )
        if not report.result.valid:
            return CertAuthResult(
                False, f"the client certificate was rejected: {report.result.reason}", None, report
            )
        if config.mode is Mode.VALIDATION:
            return CertAuthResult(True, "the client certificate is valid", None, report)
        if report.username is None:
            return CertAuthResult(
                False, f"no username in the certificate: {report.username_error}", None, report
            )
        account = (resolve or self._admins.get)(report.username.username)
        if account is None:
            return CertAuthResult(
                False,
                f"the certificate maps to user '{report.username.username}', which has no account",
                None,
                report,
            )
        return CertAuthResult(True, f"logged in as {account.name}", account, report)
