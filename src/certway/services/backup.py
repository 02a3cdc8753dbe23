"""Encrypted backups of a node's whole state, and restoring a node from one.

A backup file is::

    CERTWAY-BACKUP 1\\n                 magic and format version (a newer version is refused)
    {"kdf": …, "check": …, …}\\n        header: JSON, readable, authenticated (not secret)
    chunk 0 … chunk n-1                 AES-256-GCM, 1 MiB of payload each (+ 16-byte tag)

The key is derived from the passphrase with argon2id (RFC 9106's second recommended
setting: 64 MiB, 3 passes, 4 lanes; the parameters and a random 16-byte salt are in the
header) and split with HKDF-SHA256 into the encryption key and a 16-byte passphrase check
kept in the header, so a wrong passphrase is told apart from a damaged file. Chunk ``i`` is
encrypted with the 96-bit big-endian nonce ``i`` (the key is new for every file, its salt
being random) and the two header lines as associated data, so the header cannot be altered
and the chunks cannot be reordered; the header gives the payload length, so a truncated or
extended file is refused before anything is decrypted.

The payload is zlib-compressed JSON lines: a summary, then every table of the schema
(``certway.store.backup``) with its columns and rows. Private keys and token PINs, sealed in
the store with the node's master key, are opened and are in the payload under the
passphrase only; the master key is never in the file. A CA whose key is in a PKCS#11 token
is there as its reference (token registration, key object id), never the key.

Restoring reads and checks the whole file before it writes anything, then builds a new data
directory (a new master key; every secret sealed again under it) beside the target and
moves it into place, so an error leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import secrets
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from certway import __version__
from certway.clock import Clock
from certway.errors import CertwayError, DecodeError, PassphraseError, PolicyViolation
from certway.services.audit import Audit, audited
from certway.services.node_settings import NodeSettings
from certway.store import backup as rows
from certway.store.db import Store

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BackupSummary",
    "Backups",
    "KdfParams",
    "Progress",
    "RestorePlan",
    "TokenKeyCheck",
    "open_backup",
]

MAGIC = b"CERTWAY-BACKUP"
FORMAT_VERSION = 1
CHUNK = 1 << 20
_TAG = 16
_HEADER_LIMIT = 64 * 1024
MIN_PASSPHRASE = 10

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: a step's description, how much of it is done."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """argon2id cost: memory in KiB, passes, lanes."""

    memory_kib: int = 65536
    time_cost: int = 3
    parallelism: int = 4

    def check(self) -> None:
        if not (8 * self.parallelism <= self.memory_kib <= 1024 * 1024):
            raise DecodeError("the backup's key derivation asks for an unusable amount of memory")
        if not (1 <= self.time_cost <= 64 and 1 <= self.parallelism <= 64):
            raise DecodeError("the backup's key derivation parameters are out of range")


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What the readable header says (no secret in it)."""

    created_at: dt.datetime
    node: str
    schema: str
    certway: str
    tables: dict[str, int]  # rows per table (from the payload)
    node_id: int = 1  # the peer the backup was made on (an embedded node is peer 1)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


@dataclass(frozen=True, slots=True)
class TokenKeyCheck:
    """A token-backed CA of a restored node: whether its key is reachable here."""

    ca: str
    token: str
    module: str
    token_label: str
    key_id: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """A backup read, checked and decrypted: what ``restore`` writes."""

    summary: BackupSummary
    tables: tuple[rows.TableRows, ...]

    def restore_into(
        self,
        data_dir: Path,
        clock: Clock,
        *,
        database: str | None = None,
        source: str = "",
        progress: Progress | None = None,
    ) -> tuple[TokenKeyCheck, ...]:
        """Build the node of this backup in the new or empty ``data_dir`` (with
        ``database``, a PostgreSQL URL: a cluster in that empty database, this node being
        the peer the backup was made on); return how each token-backed CA's key is
        reachable from here. The restored node's audit log records the restore (``source``:
        where the backup came from)."""
        rows.check_new_data_dir(data_dir)
        if database is None and self.summary.node_id != 1:
            raise PolicyViolation(
                "backup-target",
                f"this backup was made on peer {self.summary.node_id} of a cluster: restore it "
                "into an empty PostgreSQL database",
            )
        total = self.summary.rows
        done = [0]

        def step(count: int) -> None:
            done[0] += count
            if progress is not None:
                progress("restoring the database", done[0], total)

        if database is None:
            rows.restore_data_dir(data_dir, self.summary.schema, self.tables, step)
        else:
            rows.restore_cluster(
                data_dir, database, self.summary.node_id, self.summary.schema, self.tables, step
            )
        checks = check_token_keys(self.tables)
        store = Store.open(data_dir)
        try:
            with Audit(store, clock).action("backup.restore", source) as detail:
                detail.update(
                    node=self.summary.node,
                    created_at=self.summary.created_at.isoformat(),
                    rows=self.summary.rows,
                    token_keys_missing=[c.ca for c in checks if not c.ok],
                )
        finally:
            store.close()
        return checks


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise DecodeError(f"the backup header's {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"the backup header's {what} is not base64") from None


def _derive(passphrase: bytes, salt: bytes, kdf: KdfParams) -> tuple[bytes, bytes]:
    """(encryption key, passphrase check) from the passphrase."""
    try:
        master = hash_secret_raw(
            passphrase,
            salt,
            time_cost=kdf.time_cost,
            memory_cost=kdf.memory_kib,
            parallelism=kdf.parallelism,
            hash_len=32,
            type=Type.ID,
        )
    except HashingError:
        raise DecodeError("the backup's key derivation parameters cannot be used") from None
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"certway backup 1 key").derive(master)
    check = HKDF(hashes.SHA256(), 16, salt=None, info=b"certway backup 1 check").derive(master)
    return key, check


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


# -- the payload: JSON lines ------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b": _b64(value)}
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b"}:
            return base64.b64decode(value["b"])
        if set(value) == {"t"}:
            return dt.datetime.fromisoformat(value["t"])
        raise ValueError("unknown value")
    return value


def _payload_lines(summary: dict[str, Any], tables: Iterable[rows.TableRows]) -> Iterator[bytes]:
    yield json.dumps(summary).encode() + b"\n"
    for table in tables:
        head = {"table": table.name, "columns": table.columns, "opened": table.opened}
        yield json.dumps({**head, "rows": len(table.rows)}).encode() + b"\n"
        for row in table.rows:
            yield json.dumps([_encode(v) for v in row], separators=(",", ":")).encode() + b"\n"


def _parse_payload(payload: bytes) -> tuple[dict[str, Any], tuple[rows.TableRows, ...]]:
    lines = iter(payload.split(b"\n"))
    try:
        summary = json.loads(next(lines))
        tables: list[rows.TableRows] = []
        for _ in summary["tables"]:
            head = json.loads(next(lines))
            table = rows.TableRows(head["table"], list(head["columns"]), list(head["opened"]))
            for _ in range(int(head["rows"])):
                table.rows.append([_decode(v) for v in json.loads(next(lines))])
            tables.append(table)
    except (StopIteration, KeyError, TypeError, ValueError):
        raise DecodeError("the backup's content is damaged (its rows cannot be read)") from None
    if not isinstance(summary, dict):
        raise DecodeError("the backup's content is damaged")
    return summary, tuple(tables)


# -- the file ---------------------------------------------------------------------------------
def seal_backup(
    payload: bytes,
    passphrase: bytes,
    info: dict[str, Any],
    *,
    kdf: KdfParams | None = None,
    progress: Progress | None = None,
) -> bytes:
    kdf = kdf or DEFAULT_KDF
    salt = secrets.token_bytes(16)
    if progress is not None:
        progress("deriving the key from the passphrase", 0, 1)
    key, check = _derive(passphrase, salt, kdf)
    if progress is not None:
        progress("deriving the key from the passphrase", 1, 1)
    header = {
        "kdf": {
            "name": "argon2id",
            "salt": _b64(salt),
            "memory_kib": kdf.memory_kib,
            "time_cost": kdf.time_cost,
            "parallelism": kdf.parallelism,
        },
        "check": _b64(check),
        "cipher": "AES-256-GCM",
        "chunk": CHUNK,
        "length": len(payload),
        **info,
    }
    head = MAGIC + f" {FORMAT_VERSION}\n".encode() + json.dumps(header).encode() + b"\n"
    aead = AESGCM(key)
    parts = [head]
    count = max(1, -(-len(payload) // CHUNK))
    for index in range(count):
        piece = payload[index * CHUNK : (index + 1) * CHUNK]
        parts.append(aead.encrypt(_nonce(index), piece, head))
        if progress is not None:
            progress("encrypting", index + 1, count)
    return b"".join(parts)


def _header(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """The two header lines (the associated data) and the header's JSON."""
    if not data.startswith(MAGIC + b" "):
        if data and (MAGIC + b" ").startswith(data):
            raise DecodeError("the backup file is truncated (its first line is incomplete)")
        raise DecodeError("this is not a certway backup file")
    first_end = data.find(b"\n", 0, 64)
    if first_end < 0:
        raise DecodeError("the backup file is truncated (its first line is incomplete)")
    try:
        version = int(data[len(MAGIC) + 1 : first_end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("this is not a certway backup file (bad version line)") from None
    if version > FORMAT_VERSION:
        raise PolicyViolation(
            "backup-format",
            f"the backup is in format {version}, written by a newer certway; this certway "
            f"{__version__} reads format {FORMAT_VERSION}: restore it with a newer certway",
        )
    if version < 1:
        raise DecodeError(f"the backup's format version {version} does not exist")
    end = data.find(b"\n", first_end + 1, first_end + 1 + _HEADER_LIMIT)
    if end < 0:
        raise DecodeError("the backup file is truncated (its header is incomplete)")
    try:
        header = json.loads(data[first_end + 1 : end])
    except ValueError:
        raise DecodeError("the backup's header is damaged (not JSON)") from None
    if not isinstance(header, dict):
        raise DecodeError("the backup's header is damaged")
    return data[: end + 1], header


def open_backup(data: bytes, passphrase: bytes, progress: Progress | None = None) -> RestorePlan:
    """Check and decrypt a backup file; nothing is written."""
    head, header = _header(data)
    try:
        kdf_info = header["kdf"]
        if kdf_info.get("name") != "argon2id" or header.get("cipher") != "AES-256-GCM":
            raise DecodeError("the backup uses a key derivation or cipher this certway lacks")
        kdf = KdfParams(
            int(kdf_info["memory_kib"]), int(kdf_info["time_cost"]), int(kdf_info["parallelism"])
        )
        salt = _unb64(kdf_info["salt"], "salt")
        expected_check = _unb64(header["check"], "passphrase check")
        chunk = int(header["chunk"])
        length = int(header["length"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DecodeError("the backup's header is damaged (a field is missing)") from None
    kdf.check()
    if not (1024 <= chunk <= 64 * CHUNK) or length < 0:
        raise DecodeError("the backup's header is damaged (chunk size or length)")
    count = max(1, -(-length // chunk))
    body = memoryview(data)[len(head) :]
    expected_size = length + count * _TAG
    if len(body) < expected_size:
        raise DecodeError(
            f"the backup file is truncated: {len(data)} bytes, {len(head) + expected_size} expected"
        )
    if len(body) > expected_size:
        raise DecodeError("the backup file is damaged: it has bytes after its end")
    if progress is not None:
        progress("deriving the key from the passphrase", 0, 1)
    key, check = _derive(passphrase, salt, kdf)
    if progress is not None:
        progress("deriving the key from the passphrase", 1, 1)
    if not hmac.compare_digest(check, expected_check):
        raise PassphraseError("wrong passphrase for this backup")
    aead = AESGCM(key)
    pieces = []
    position = 0
    for index in range(count):
        size = min(chunk, length - index * chunk) + _TAG
        try:
            pieces.append(
                aead.decrypt(_nonce(index), bytes(body[position : position + size]), head)
            )
        except InvalidTag:
            raise DecodeError(
                "the backup file is damaged or was altered (its authentication failed)"
            ) from None
        position += size
        if progress is not None:
            progress("decrypting", index + 1, count)
    try:
        payload = zlib.decompress(b"".join(pieces))
    except zlib.error:
        raise DecodeError("the backup's content is damaged (cannot decompress)") from None
    summary_raw, tables = _parse_payload(payload)
    summary = _summary(summary_raw, tables)
    if summary.schema != header.get("schema"):
        raise DecodeError("the backup's header and content disagree")
    if not rows.known_revision(summary.schema):
        raise PolicyViolation(
            "backup-schema",
            f"the backup's database schema {summary.schema} is newer than this certway "
            f"{__version__} knows: restore it with a newer certway",
        )
    return RestorePlan(summary, tables)


def _summary(raw: dict[str, Any], tables: tuple[rows.TableRows, ...]) -> BackupSummary:
    try:
        return BackupSummary(
            created_at=dt.datetime.fromisoformat(str(raw["created_at"])),
            node=str(raw["node"]),
            schema=str(raw["schema"]),
            certway=str(raw["certway"]),
            tables={t.name: len(t.rows) for t in tables},
            node_id=int(raw.get("node_id", 1)),
        )
    except (KeyError, ValueError):
        raise DecodeError("the backup's content is damaged (no summary)") from None


# -- token-backed CAs after a restore ---------------------------------------------------------
def check_token_keys(tables: Iterable[rows.TableRows]) -> tuple[TokenKeyCheck, ...]:
    """For each CA whose key is in a token: can this machine reach that key? Opens the token
    with the registration of the backup (module path, token label, PIN)."""
    from certway.hsm import TokenSession  # optional dependency: imported when needed

    by_name = {table.name: table for table in tables}

    def records(name: str) -> list[dict[str, Any]]:
        table = by_name.get(name)
        if table is None:
            return []
        return [dict(zip(table.columns, row, strict=True)) for row in table.rows]

    tokens = {row["id"]: row for row in records("tokens")}
    checks: list[TokenKeyCheck] = []
    for ca in records("cas"):
        if ca.get("token_id") is None:
            continue
        token = tokens.get(ca["token_id"])
        if token is None:
            continue
        key_id = str(ca.get("token_key_id") or "")
        where = (
            f"CA '{ca['name']}': its key is in token '{token['name']}' (module {token['module']}, "
            f"token label '{token['token_label']}', key id {key_id})"
        )
        session = None
        try:
            session = TokenSession(
                token["module"], token["token_label"], token["sealed_pin"].decode()
            )
            key = session.key(key_id)
            cert = x509.load_der_x509_certificate(ca["certificate_der"])
            if key.public_key() != cert.public_key():
                raise CertwayError("the key object found does not match the CA certificate")
            ok, message = True, f"{where}: found"
        except CertwayError as exc:
            ok = False
            message = (
                f"{where} cannot be used on this machine: {exc}. The CA is restored but cannot "
                "sign until that token is reachable here"
            )
        finally:
            if session is not None:
                session.close()
        checks.append(
            TokenKeyCheck(
                ca["name"],
                token["name"],
                token["module"],
                token["token_label"],
                key_id,
                ok,
                message,
            )
        )
    return tuple(checks)


# -- the service ------------------------------------------------------------------------------
class Backups:
    """Backups of this node (``create``); restoring builds another node (``open_backup``)."""

    def __init__(self, store: Store, clock: Clock, audit: Audit, settings: NodeSettings) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._settings = settings

    @audited("backup.create", target=lambda *_a, **_k: "")  # never the passphrase
    def create(
        self,
        passphrase: bytes,
        *,
        progress: Progress | None = None,
        kdf: KdfParams | None = None,
    ) -> bytes:
        """The whole state of this node as one encrypted backup file."""
        check_passphrase(passphrase)
        counts = rows.row_counts(self._store)
        total = sum(counts.values())
        done = [0]

        def step(count: int) -> None:
            done[0] += count
            if progress is not None:
                progress("reading the database", done[0], total)

        tables = list(rows.read(self._store, step))
        schema = rows.revision_of(self._store)
        info = {
            "created_at": self._clock.now().isoformat(),
            "node": self._settings.get().fqdn,
            "schema": schema,
            "certway": __version__,
            "node_id": self._store.node_id,
        }
        summary = {**info, "tables": [t.name for t in tables]}
        compressor = zlib.compressobj(6)
        payload = b"".join(compressor.compress(line) for line in _payload_lines(summary, tables))
        payload += compressor.flush()
        data = seal_backup(payload, passphrase, info, kdf=kdf, progress=progress)
        self._audit.note(rows=total, tables=len(tables), bytes=len(data))
        return data

    @audited("backup.restore-new-node", target=lambda _d, _p, data_dir: str(data_dir))
    def restore_new_node(
        self, data: bytes, passphrase: bytes, data_dir: Path
    ) -> tuple[RestorePlan, tuple[TokenKeyCheck, ...]]:
        """Restore a backup into a new data directory on this machine (over HTTP): this
        running node is not changed; the new node is started with ``certway serve
        --data-dir`` there. ``data_dir`` is an absolute path that does not exist or is empty."""
        if not data_dir.is_absolute():
            raise PolicyViolation(
                "backup-target",
                f"give the new data directory as an absolute path ('{data_dir}' is relative)",
            )
        if "\0" in str(data_dir):
            raise PolicyViolation("backup-target", "the data directory's path holds a NUL")
        if data_dir.resolve() == self._store.data_dir.resolve():
            raise PolicyViolation(
                "backup-target", "a backup is restored into a new data directory, not this node's"
            )
        rows.check_new_data_dir(data_dir)
        plan = open_backup(data, passphrase)
        self._audit.note(node=plan.summary.node, created_at=plan.summary.created_at.isoformat())
        checks = plan.restore_into(data_dir, self._clock, source="upload")
        self._audit.note(token_keys_missing=[c.ca for c in checks if not c.ok])
        return plan, checks


def check_passphrase(passphrase: bytes) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise PolicyViolation(
            "backup-passphrase",
            f"a backup passphrase has at least {MIN_PASSPHRASE} characters: it protects "
            "every private key of the node",
        )
