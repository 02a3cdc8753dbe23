"""SIGKILL in the middle of an upload leaves the old or the new certificate active, never a
broken state (SC4: activation is atomic).

A child process opens the node and uploads a certificate; a repository method it uses is
patched to write a marker file and sleep at the chosen moment: inside the activation
transaction (after the new version row is flushed, before the commit) or just after the
commit. The parent waits for the marker and kills the child with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certway.clock import FixedClock
from certway.services.node import Node

from conftest import NOW, key_pem, write
from pkitools import Pki

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]

CHILD = """
import sys, time, datetime as dt
from pathlib import Path
from certway.clock import FixedClock
from certway.services.identities import Identities
from certway.services.node import Node
from certway.store.repositories import SlotRepository

data_dir, cert, chain, key, marker, moment, now = sys.argv[1:]


def pause(where):
    Path(marker).write_text(where)
    time.sleep(60)


add_version = SlotRepository.add_version


def patched_add_version(self, slot, row):
    result = add_version(self, slot, row)  # the new version row is flushed, not committed
    if moment == "inside":
        pause("inside the transaction")
    return result


info = Identities.info


def patched_info(self, *args, **kwargs):  # upload() calls it once the activation committed
    if moment == "after-commit":
        pause("after the commit")
    return info(self, *args, **kwargs)


SlotRepository.add_version = patched_add_version
Identities.info = patched_info
node = Node.open(Path(data_dir), FixedClock(dt.datetime.fromisoformat(now)))
node.identities.upload(
    "server",
    "",
    Path(cert).read_bytes(),
    chain_data=Path(chain).read_bytes(),
    key_data=Path(key).read_bytes(),
)
Path(marker).write_text("finished without pausing")
"""


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Crash", index=340)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def upload_and_kill(tmp_path: Path, pki: Pki, moment: str) -> tuple[Path, str, str]:
    """Init a node, start the upload in a child, SIGKILL it at ``moment``; return the data
    directory and the fingerprints of the old and the new certificate."""
    clock = FixedClock(NOW)
    data_dir = tmp_path / "data"
    node = Node.init(data_dir, clock, fqdn="vcs.example.com")
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    old = node.identities.info("server").fingerprint
    node.close()
    new_cert = pki.leaf("vcs.example.com")
    cert = write(tmp_path / "new.pem", new_cert.public_bytes(serialization.Encoding.PEM))
    chain = write(tmp_path / "chain.pem", pki.intermediate.public_bytes(serialization.Encoding.PEM))
    key = write(tmp_path / "new.key", key_pem(pki.leaf_key))
    marker = tmp_path / "marker"
    script = write(tmp_path / "child.py", CHILD.encode())
    child = subprocess.Popen(
        [sys.executable, str(script), str(data_dir), str(cert), str(chain), str(key),
         str(marker), moment, NOW.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not marker.exists():
            if child.poll() is not None:
                _, err = child.communicate()
                pytest.fail(f"the child ended before pausing: {err.decode()[-2000:]}")
            assert time.monotonic() < deadline, "the child never reached the pause"
            time.sleep(0.02)
        assert marker.read_text() != "finished without pausing"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
    return data_dir, old, fingerprint(new_cert)


def integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "certway.db") as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_kill_inside_the_activation_keeps_the_old_certificate(tmp_path: Path, pki: Pki) -> None:
    data_dir, old, new = upload_and_kill(tmp_path, pki, "inside")
    assert integrity(data_dir) == "ok"
    node = Node.open(data_dir, FixedClock(NOW))
    try:
        info = node.identities.info("server")
        assert (info.version, info.fingerprint, info.source) == (1, old, "factory")
        assert [v.version for v in node.identities.history("server")] == [1]
        active = node.identities.active("server")
        assert active is not None
        node.identities.private_key(active)  # the key is there and opens
        assert node.identities.certificate_for_sni("vcs.example.com") == active
        # A later upload works and gets the next version number.
        result = node.identities.upload(
            "server",
            "",
            (tmp_path / "new.pem").read_bytes(),
            chain_data=(tmp_path / "chain.pem").read_bytes(),
            key_data=(tmp_path / "new.key").read_bytes(),
        )
        assert result.warnings == []
        assert (result.info.version, result.info.fingerprint) == (2, new)
    finally:
        node.close()
    assert integrity(data_dir) == "ok"


def test_kill_after_the_commit_keeps_the_new_certificate(tmp_path: Path, pki: Pki) -> None:
    data_dir, old, new = upload_and_kill(tmp_path, pki, "after-commit")
    assert integrity(data_dir) == "ok"
    node = Node.open(data_dir, FixedClock(NOW))
    try:
        info = node.identities.info("server")
        assert (info.version, info.fingerprint, info.source) == (2, new, "upload")
        assert info.chain == ["CN=Crash Issuing"]
        active = node.identities.active("server")
        assert active is not None
        assert node.identities.private_key(active).public_key() == pki.leaf_key.public_key()
        assert node.alarms.current() == []
        restored = node.identities.restore("server", "", 1)
        assert (restored.version, restored.fingerprint) == (3, old)
    finally:
        node.close()
