"""Interop with kamailio (Debian ``kamailio`` + ``kamailio-tls-modules``) over SIP/TLS (S4, S5).

(a) kamailio as a TLS *server* requiring client certificates from our local CA: our zones
    (presenting the node's client certificate, SC6) go Active, or Failed with the right
    reason (name mismatch, untrusted, revoked, refused).
(b) kamailio as a TLS *client*: its dispatcher module's OPTIONS keep-alive pings reach our SIP
    listener with a client certificate from our local CA and get 200 OK; once that certificate
    is revoked in certway's local CA the next connection is refused, without a restart.

Each test writes its kamailio configuration in ``tmp_path``, runs kamailio in the foreground
on 127.0.0.1 free ports (runtime directory, pid file and control socket in ``tmp_path``) and
always kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import SystemClock
from certway.pki.keys import generate_key
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.services.zones import Zones, ZoneStatus, alarms_for_zones
from certway.sip.zones import ZonePinger
from waiting import wait_for

from conftest import key_pem
from pkitools import name

pytestmark = pytest.mark.interop

CA = "interop"
STRANGER = "stranger"


def _modules_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules/tls.so"))
    found += sorted(glob.glob("/usr/lib/kamailio/modules/tls.so"))
    return os.path.dirname(found[0]) if found else None


@pytest.fixture(scope="module")
def kamailio() -> tuple[str, str]:
    """The kamailio binary and its modules directory."""
    binary = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None
    )
    if binary is None:
        pytest.skip("kamailio is not installed (make deps-system installs kamailio)")
    modules = _modules_dir()
    if modules is None:
        pytest.skip(
            "kamailio's tls module is missing (make deps-system installs kamailio-tls-modules)"
        )
    return binary, modules


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Kamailio:
    """kamailio in the foreground; its log (stderr) goes to ``log``."""

    def __init__(self, binary: str, work: Path, config: str) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.config = work / "kamailio.cfg"
        self.config.write_text(config)
        self.log = work / "kamailio.log"
        self.ctl = work / "kamailio_ctl"
        self._log_file = self.log.open("wb")
        command = [binary, "-DD", "-E", "-f", str(self.config), "-P", str(work / "kamailio.pid")]
        command += ["-Y", str(work), "-w", str(work), "-m", "32", "-M", "8"]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: every child is killed with it
        )

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_listening(self, *ports: int) -> None:
        deadline = time.monotonic() + 15
        while not all(listening(p) for p in ports):
            if self.process.poll() is not None:
                raise AssertionError(f"kamailio exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"kamailio did not listen within 15 s:\n{self.tail()}")
            time.sleep(0.05)

    def rpc(self, *command: str) -> str:
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        result = subprocess.run(
            [kamcmd, "-s", f"unix:{self.ctl}", *command],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return result.stdout + result.stderr

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log_file.close()


@contextlib.contextmanager
def running_kamailio(binary: str, work: Path, config: str) -> Iterator[Kamailio]:
    instance = Kamailio(binary, work, config)
    try:
        yield instance
    finally:
        instance.stop()


def _core(modules: str, ports: list[int], tls_cfg: Path, *, extra_modules: str = "") -> str:
    listens = "\n".join(f"listen=tls:127.0.0.1:{p}" for p in ports)
    return f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
enable_tls=yes
disable_tcp=no
tcp_connection_lifetime=1
{listens}
loadpath "{modules}"
loadmodule "tls.so"
{extra_modules}
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "ctl.so"
modparam("tls", "config", "{tls_cfg}")
"""


# -- certificates from the node's local CA -------------------------------------------------------
def write_pem(path: Path, *objects: x509.Certificate) -> Path:
    path.write_bytes(b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objects))
    return path


def issue(
    node: Node,
    ca: str,
    cn: str,
    *,
    profile: str,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
) -> tuple[x509.Certificate, bytes]:
    """A certificate issued by local CA ``ca`` and its key (PKCS#8 PEM)."""
    key = generate_key("ec:p256")
    alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    alt += [x509.DNSName(d) for d in dns]
    issued = node.local_ca.issue_certificate(
        ca, key.public_key(), name(cn), alt_names=alt, profile=profile, days=30
    )
    return issued.certificate, key_pem(key)


def use_client_certificate(node: Node, ca: str) -> x509.Certificate:
    """Make a certificate from local CA ``ca`` the node's client certificate (SC6)."""
    cert, key = issue(node, ca, "certway.test", profile="client", dns=("certway.test",))
    node.identities.upload(
        "client", "", cert.public_bytes(serialization.Encoding.PEM), key_data=key
    )
    return cert


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A node on the real clock (kamailio checks certificates against it) trusting its local
    CA ``interop``; CA ``stranger`` exists but is not trusted."""
    n = Node.init(tmp_path / "data", SystemClock(), fqdn="certway.test")
    n.local_ca.create_root(CA, "/CN=certway interop CA")
    n.local_ca.create_root(STRANGER, "/CN=certway stranger CA")
    n.trusted_cas.add(n.local_ca.certificate(CA).public_bytes(serialization.Encoding.PEM))
    try:
        yield n
    finally:
        n.close()


# -- (a) kamailio as a TLS server ------------------------------------------------------------
def test_zones_to_kamailio_requiring_client_certificates(
    kamailio: tuple[str, str], node: Node, tmp_path: Path
) -> None:
    binary, modules = kamailio
    work = tmp_path / "kamailio-server"
    work.mkdir()
    our_ca = write_pem(work / "ca.pem", node.local_ca.certificate(CA))
    use_client_certificate(node, CA)

    certs = {
        "good": issue(node, CA, "kamailio.test", profile="server", ips=("127.0.0.1",)),
        "mismatch": issue(node, CA, "kamailio.test", profile="server", dns=("kamailio.test",)),
        "untrusted": issue(node, STRANGER, "kamailio.test", profile="server", ips=("127.0.0.1",)),
    }
    ports = {label: free_port() for label in certs}
    domains = []
    for label, (cert, key) in certs.items():
        write_pem(work / f"{label}.pem", cert)
        (work / f"{label}.key").write_bytes(key)
        domains.append(
            f"""[server:127.0.0.1:{ports[label]}]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
certificate = {work / f"{label}.pem"}
private_key = {work / f"{label}.key"}
ca_list = {our_ca}
"""
        )
    good_cert = certs["good"][0]
    default = f"""[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
certificate = {work / "good.pem"}
private_key = {work / "good.key"}
ca_list = {our_ca}
"""
    tls_cfg = work / "tls.cfg"
    tls_cfg.write_text("\n".join([default, *domains]))
    config = (
        _core(modules, list(ports.values()), tls_cfg)
        + f"""
modparam("ctl", "binrpc", "unix:{work / "kamailio_ctl"}")
request_route {{
    if (is_method("OPTIONS")) {{
        xlog("L_INFO", "options from $si:$sp over $pr\\n");
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
    )
    zones = Zones(node.store, node.clock, node.audit)
    for label, port in ports.items():
        zones.add(label, peers=["127.0.0.1"], port=port)

    def check_all() -> dict[str, ZoneStatus]:
        pinger = ZonePinger(node, zones, timeout=5)

        async def run() -> list[ZoneStatus]:
            return await asyncio.gather(*(pinger.check(z) for z in zones.entries()))

        return {s.zone: s for s in asyncio.run(run())}

    with running_kamailio(binary, work, config) as k:
        k.wait_listening(*ports.values())
        statuses = check_all()
        log = k.tail()
        assert statuses["good"].state == "Active", (statuses["good"], log)
        assert statuses["good"].peers[0].response == "200 OK"
        assert statuses["mismatch"].reason == "name mismatch", statuses["mismatch"]
        assert "'127.0.0.1' as an IP address" in statuses["mismatch"].detail
        assert statuses["untrusted"].reason == "untrusted", statuses["untrusted"]
        assert "certway stranger CA" in statuses["untrusted"].detail

        # kamailio really checks our client certificate: one from a CA it does not trust
        # is refused in the TLS handshake.
        use_client_certificate(node, STRANGER)
        good = ZonePinger(node, zones, timeout=5).check_now("good")
        assert good.reason == "refused", (good, k.tail())

        # a revocation by our own CA is effective at once (no CRL download)
        use_client_certificate(node, CA)
        node.local_ca.revoke(CA, serial_hex(good_cert.serial_number), reason="keyCompromise")
        good = ZonePinger(node, zones, timeout=5).check_now("good")
        assert good.reason == "revoked" and "by local CA" in good.detail, good
    alarms = {a.id: a for a in alarms_for_zones(node.store)}
    assert set(alarms) == {
        "zone:good:127.0.0.1",
        "zone:mismatch:127.0.0.1",
        "zone:untrusted:127.0.0.1",
    }
    assert "(name mismatch)" in alarms["zone:mismatch:127.0.0.1"].text


# -- (b) kamailio as a TLS client --------------------------------------------------------------
@contextlib.contextmanager
def sip_listener(node: Node) -> Iterator[Any]:
    listener_module = pytest.importorskip(
        "certway.sip.listener", reason="SipListener not available"
    )
    from certway.services.sip_settings import SipSettings

    # Connections idle for a second are closed, so each keep-alive ping of kamailio (every two
    # seconds) comes on a new connection whose certificate is checked again; established
    # connections are never re-checked (S7).
    listener = listener_module.SipListener(
        node,
        "127.0.0.1",
        0,
        sip_settings=SipSettings(node.store, node.clock, node.audit),
        limits=listener_module.SipLimits(idle_timeout=1.0),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sip-listener", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
        yield listener
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_kamailio_pings_our_listener_until_its_certificate_is_revoked(
    kamailio: tuple[str, str], node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary, modules = kamailio
    caplog.set_level(logging.INFO, logger="certway.sip")
    work = tmp_path / "kamailio-client"
    work.mkdir()
    client_cert, client_key = issue(
        node, CA, "kamailio.test", profile="client", dns=("kamailio.test",)
    )
    write_pem(work / "client.pem", client_cert)
    (work / "client.key").write_bytes(client_key)
    server_cert, server_key = issue(node, CA, "kamailio.test", profile="server", ips=("127.0.0.1",))
    write_pem(work / "server.pem", server_cert)
    (work / "server.key").write_bytes(server_key)
    temporary_ca = node.identities.temporary_ca()
    assert temporary_ca is not None  # it issued the server certificate our listener presents
    our_ca = write_pem(work / "ca.pem", temporary_ca, node.local_ca.certificate(CA))
    kamailio_port = free_port()

    with sip_listener(node) as listener:
        (work / "dispatcher.list").write_text(f"1 sip:127.0.0.1:{listener.port};transport=tls 0\n")
        tls_cfg = work / "tls.cfg"
        tls_cfg.write_text(
            f"""[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {work / "server.pem"}
private_key = {work / "server.key"}

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
certificate = {work / "client.pem"}
private_key = {work / "client.key"}
ca_list = {our_ca}
"""
        )
        config = (
            _core(
                modules,
                [kamailio_port],
                tls_cfg,
                extra_modules='loadmodule "tm.so"\nloadmodule "dispatcher.so"',
            )
            + f"""
modparam("ctl", "binrpc", "unix:{work / "kamailio_ctl"}")
modparam("tm", "fr_timer", 1500)
modparam("dispatcher", "list_file", "{work / "dispatcher.list"}")
modparam("dispatcher", "ds_ping_interval", 2)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", "sip:kamailio@127.0.0.1")
request_route {{
    sl_send_reply("405", "Method Not Allowed");
}}
"""
        )
        with running_kamailio(binary, work, config) as k:
            k.wait_listening(kamailio_port)

            def state() -> str:
                return k.rpc("dispatcher.list")

            wait_for(lambda: "FLAGS: AP" in state(), "kamailio's dispatcher to see 200 OK")
            assert not [r for r in caplog.records if "event=sip-refused" in r.getMessage()]

            serial = serial_hex(client_cert.serial_number)
            node.local_ca.revoke(CA, serial, reason="keyCompromise")
            listener.refresh()  # what certway serve's reload loop does every 0.5 s

            def refused() -> bool:
                return any(
                    "event=sip-refused" in r.getMessage() and serial in r.getMessage()
                    for r in caplog.records
                )

            wait_for(refused, "our listener to refuse the revoked certificate")
            wait_for(lambda: "FLAGS: AP" not in state(), "kamailio's dispatcher to mark us down")
            line = next(r.getMessage() for r in caplog.records if serial in r.getMessage())
            assert "reason=revoked" in line and "subject='CN=kamailio.test'" in line, line
            assert listener.port  # still serving: no restart
