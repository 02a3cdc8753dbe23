"""A throwaway OpenLDAP ``slapd`` (Debian ``slapd``) for the LDAP admin authentication tests.

Its own ``slapd.conf`` (``slapd -f``), database, certificate and 127.0.0.1 ports (LDAPS, and
ldap:// for StartTLS) in a temporary directory; users and groups loaded with ``slapadd``
before it starts. Simple binds need TLS (``security simple_bind=128``) and a client
certificate from the CA given is demanded, so a test passing proves certway sent one.
Always stopped by ``stop``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from waiting import wait_for

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=test"
BIND_DN = f"cn=certway-bind,ou=services,{SUFFIX}"
BIND_PASSWORD = "bind secret 42"
ADMINS = f"cn=vcs-admins,ou=groups,{SUFFIX}"
AUDITORS = f"cn=vcs-auditors,ou=groups,{SUFFIX}"
PASSWORDS = {
    "alice": "alice LDAP pass",
    "bob": "bob LDAP pass",
    "carol": "carol LDAP pass",
    "dave": "dave LDAP pass",
}
"""alice: vcs-admins (read-write); bob: vcs-auditors (read-only); carol: no mapped group;
dave: both groups (read-write wins)."""


def available() -> bool:
    return os.path.exists(SLAPD) and os.path.exists(SLAPADD)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {BIND_DN}\nobjectClass: person\ncn: certway-bind\nsn: bind\n"
        f"userPassword: {BIND_PASSWORD}",
    ]
    for user, password in PASSWORDS.items():
        entries.append(
            f"dn: uid={user},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {user}\n"
            f"cn: {user.title()}\nsn: {user.title()}\nuserPassword: {password}"
        )
    entries.append(
        f"dn: {ADMINS}\nobjectClass: groupOfNames\ncn: vcs-admins\n"
        f"member: uid=alice,ou=people,{SUFFIX}\nmember: uid=dave,ou=people,{SUFFIX}"
    )
    entries.append(
        f"dn: {AUDITORS}\nobjectClass: groupOfNames\ncn: vcs-auditors\n"
        f"member: uid=bob,ou=people,{SUFFIX}\nmember: uid=dave,ou=people,{SUFFIX}"
    )
    return "\n\n".join(entries) + "\n"


class Slapd:
    def __init__(self, work: Path, *, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        (work / "db").mkdir(exist_ok=True)
        (work / "server.pem").write_bytes(cert_pem)
        key = work / "server.key"
        key.write_bytes(key_pem)
        key.chmod(0o600)
        (work / "client-ca.pem").write_bytes(client_ca_pem)
        self.ldaps_port = free_port()
        self.ldap_port = free_port()
        self.conf = work / "slapd.conf"
        self.conf.write_text(
            f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {work}/slapd.pid
argsfile {work}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {work}/server.pem
TLSCertificateKeyFile {work}/server.key
TLSCACertificateFile {work}/client-ca.pem
TLSVerifyClient demand
security simple_bind=128
database mdb
suffix "{SUFFIX}"
rootdn "cn=root,{SUFFIX}"
directory {work}/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""
        )
        (work / "data.ldif").write_text(_ldif())
        subprocess.run(
            [SLAPADD, "-f", str(self.conf), "-l", str(work / "data.ldif")],
            check=True,
            capture_output=True,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = work / "slapd.log"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    def start(self) -> None:
        urls = f"{self.ldaps_url}/ {self.ldap_url}/"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SLAPD, "-f", str(self.conf), "-h", urls, "-d", "256"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self._listening() or self._died(), "slapd to listen")
        if self._died():
            raise RuntimeError(f"slapd did not start: {self.log.read_text()[-2000:]}")

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _listening(self) -> bool:
        for port in (self.ldaps_port, self.ldap_port):
            with contextlib.closing(socket.socket()) as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)
