"""Keys in a PKCS#11 token (an HSM, or SoftHSM2 in tests), through python-pkcs11.

A token key is offered to the rest of certway as a ``cryptography`` private key
(``TokenEcKey`` / ``TokenRsaKey``) whose ``sign()`` asks the token: certificate, CRL and OCSP
builders take it like any other key, and the private key never leaves the token (generated
sensitive and non-extractable). One logged-in session per token is kept and reused; a lock
serialises the calls on it. A PIN is never logged nor put in an error message.

A session lost while serving (token removed and put back, module reset, HSM restarted) is
reopened on the next operation, which is then tried once more; a key is found again by its
object id and must still have the public key it had, so no signature is ever made by
another key. What went wrong last is kept (``TokenSession.fault``) for the node's alarms.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import os
import secrets
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn, Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.utils import Buffer

from certway.errors import PolicyViolation, TokenError
from certway.waiting import check_may_wait

__all__ = [
    "TOKEN_KEY_TYPES",
    "TokenEcKey",
    "TokenKeyInfo",
    "TokenRsaKey",
    "TokenSession",
    "same_public_key",
]

T = TypeVar("T")

TOKEN_KEY_TYPES: tuple[str, ...] = ("rsa:2048", "rsa:3072", "rsa:4096", "ec:p256", "ec:p384")

_CURVES: dict[str, tuple[str, type[ec.EllipticCurve]]] = {
    "p256": ("secp256r1", ec.SECP256R1),
    "p384": ("secp384r1", ec.SECP384R1),
}
_RSA_MECHANISMS = {
    "sha256": "SHA256_RSA_PKCS",
    "sha384": "SHA384_RSA_PKCS",
    "sha512": "SHA512_RSA_PKCS",
}


def _pkcs11() -> ModuleType:
    try:
        return importlib.import_module("pkcs11")
    except ImportError:
        raise TokenError(
            "PKCS#11 tokens need the python-pkcs11 package: pip install 'certway[hsm]'"
        ) from None


def _fail(what: str, exc: Exception) -> NoReturn:
    """A token error as one clear line (the PKCS#11 error class names the cause)."""
    pkcs11 = _pkcs11()
    if isinstance(exc, pkcs11.PinIncorrect | pkcs11.PinInvalid | pkcs11.PinLenRange):
        raise TokenError(f"{what}: the token refused the PIN") from None
    if isinstance(exc, pkcs11.PinLocked):
        raise TokenError(f"{what}: the token's PIN is locked") from None
    detail = str(exc).strip() or type(exc).__name__
    raise TokenError(f"{what}: {type(exc).__name__} ({detail})") from None


class TokenKeyInfo:
    """A key object in a token, as `token test` lists it (no secret in it)."""

    __slots__ = ("id_hex", "key_type", "label")

    def __init__(self, label: str, id_hex: str, key_type: str) -> None:
        self.label = label
        self.id_hex = id_hex
        self.key_type = key_type


class _Login:
    """One logged-in PKCS#11 session, shared by every ``TokenSession`` of this process on
    the same token: PKCS#11 login state belongs to the process, so a second login would be
    refused. ``digest`` lets a later opener's PIN be compared; the PIN itself is kept (in
    this process's memory only, like the master key) to log in again after a lost session.
    ``generation`` counts the sessions opened, so key handles of an older one are found
    again; ``fault`` is the last failure, cleared by the next success."""

    def __init__(self, lib: Any, session: Any, digest: bytes, pin: str) -> None:
        self.lib = lib
        self.session: Any | None = session
        self.digest = digest
        self._pin = pin
        self.users = 0
        self.lock = threading.Lock()
        self.generation = 0
        self.fault: str | None = None

    def __repr__(self) -> str:  # never the PIN
        return f"_Login(generation={self.generation}, fault={self.fault!r})"


# The errors that mean the session (or the token behind it) is gone, not that the operation
# was refused: the session is reopened and the operation tried once more.
_LOST = (
    "SessionHandleInvalid",
    "SessionClosed",
    "DeviceRemoved",
    "DeviceError",
    "TokenNotPresent",
    "TokenNotRecognised",
    "UserNotLoggedIn",
    "ObjectHandleInvalid",
    "KeyHandleInvalid",
)


def _is_lost(exc: Exception) -> bool:
    return type(exc).__name__ in _LOST


def _open_session(lib: Any, module: str, token_label: str, pin: str) -> Any:
    """A logged-in read-write session on the token (TokenError when that cannot be)."""
    pkcs11 = _pkcs11()
    what = f"token '{token_label}' of {module}"
    try:
        token = lib.get_token(token_label=token_label)
    except pkcs11.NoSuchToken:
        raise TokenError(f"the module {module} has no token labelled '{token_label}'") from None
    except pkcs11.PKCS11Error as exc:
        _fail(f"cannot find {what}", exc)
    try:
        return token.open(user_pin=pin, rw=True)
    except pkcs11.UserAlreadyLoggedIn:
        # Another session of this process is still logged in: the new one shares the login.
        try:
            return token.open(rw=True)
        except pkcs11.PKCS11Error as exc:
            _fail(f"cannot open a session on {what}", exc)
    except pkcs11.PKCS11Error as exc:
        _fail(f"cannot log in to {what}", exc)


_logins: dict[tuple[str, str], _Login] = {}
_logins_lock = threading.Lock()


def _digest(module: str, token_label: str, pin: str) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(f"{module}\0{token_label}\0{pin}".encode())
    return h.finalize()


class TokenSession:
    """A logged-in session on one token of one PKCS#11 module."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        pkcs11 = _pkcs11()
        if not os.path.isfile(module):
            raise TokenError(f"the PKCS#11 module {module} does not exist")
        what = f"token '{token_label}' of {module}"
        digest = _digest(module, token_label, pin)
        with _logins_lock:
            login = _logins.get((module, token_label))
            if login is not None:
                if not hmac.compare_digest(login.digest, digest):
                    raise TokenError(f"cannot log in to {what}: the token refused the PIN")
            else:
                try:
                    lib = pkcs11.lib(module)
                except pkcs11.PKCS11Error as exc:
                    _fail(f"cannot load the PKCS#11 module {module}", exc)
                session = _open_session(lib, module, token_label, pin)
                login = _logins[(module, token_label)] = _Login(lib, session, digest, pin)
            login.users += 1
        self._login: _Login | None = login
        self._shared = login  # kept after close, for the fault and generation
        self._lock = login.lock
        self.module = module
        self.token_label = token_label

    def __repr__(self) -> str:
        return f"TokenSession({self.module!r}, {self.token_label!r})"

    def close(self) -> None:
        """Release this session; the last one of the process logs out."""
        pkcs11 = _pkcs11()
        with _logins_lock:
            login, self._login = self._login, None
            if login is None:
                return
            login.users -= 1
            if login.users > 0:
                return
            del _logins[(self.module, self.token_label)]
        # A session already gone with the token leaves nothing to release.
        with login.lock, contextlib.suppress(pkcs11.PKCS11Error):
            if login.session is not None:
                login.session.close()
            login.session = None

    @property
    def fault(self) -> str | None:
        """The last operation's failure on this token (None after a success)."""
        return self._shared.fault

    @property
    def generation(self) -> int:
        return self._shared.generation

    # -- the session, reopened when lost ------------------------------------------------
    def _reconnect(self) -> None:
        """Open a new logged-in session in place of a lost one (the lock is held). A token
        the module no longer lists (removed and put back) needs the module reinitialised."""
        pkcs11 = _pkcs11()
        login = self._shared
        old, login.session = login.session, None
        if old is not None:
            with contextlib.suppress(pkcs11.PKCS11Error):
                old.close()
        try:
            try:
                login.session = _open_session(login.lib, self.module, self.token_label, login._pin)
            except TokenError:
                with contextlib.suppress(pkcs11.PKCS11Error):
                    login.lib.reinitialize()
                login.session = _open_session(login.lib, self.module, self.token_label, login._pin)
        except TokenError as exc:
            login.fault = str(exc)
            raise
        login.generation += 1

    def _run(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(session)`` under the lock; a lost session is reopened and ``work`` tried
        once more. Failures are kept as the token's fault, a success clears it."""
        pkcs11 = _pkcs11()
        if self._login is None:
            raise TokenError(f"{what}: the session on the token was closed")
        check_may_wait("the PKCS#11 token")
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._shared.session is None:
                        self._reconnect()
                    result = work(self._shared.session)
                except TokenError as exc:
                    self._shared.fault = f"{what}: {exc}"
                    raise TokenError(self._shared.fault) from None
                except pkcs11.PKCS11Error as exc:
                    if attempt == 1 and _is_lost(exc):
                        try:
                            self._reconnect()
                        except TokenError as lost:
                            raise TokenError(f"{what}: {lost}") from None
                        continue
                    try:
                        _fail(what, exc)
                    except TokenError as failed:
                        self._shared.fault = str(failed)
                        raise
                self._shared.fault = None
                return result
        raise AssertionError("unreachable")

    # -- keys -----------------------------------------------------------------------------
    def generate(self, key_type: str, label: str) -> tuple[str, TokenEcKey | TokenRsaKey]:
        """Generate a key pair inside the token (private half sensitive, non-extractable);
        return its object id (hex) and the key."""
        if key_type not in TOKEN_KEY_TYPES:
            raise PolicyViolation(
                "key-type",
                f"a token key must be one of {', '.join(TOKEN_KEY_TYPES)}, not '{key_type}'",
            )
        pkcs11 = _pkcs11()
        from pkcs11.util.ec import encode_named_curve_parameters

        object_id = secrets.token_bytes(16)
        family, _, param = key_type.partition(":")
        private_template = {
            pkcs11.Attribute.SENSITIVE: True,
            pkcs11.Attribute.EXTRACTABLE: False,
            pkcs11.Attribute.SIGN: True,
            pkcs11.Attribute.PRIVATE: True,
        }

        def work(session: Any) -> None:
            if family == "ec":
                params = session.create_domain_parameters(
                    pkcs11.KeyType.EC,
                    {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[param][0])},
                    local=True,
                )
                params.generate_keypair(
                    store=True, label=label, id=object_id, private_template=private_template
                )
            else:
                session.generate_keypair(
                    pkcs11.KeyType.RSA,
                    int(param),
                    store=True,
                    label=label,
                    id=object_id,
                    private_template=private_template,
                )

        self._run(f"cannot generate a {key_type} key in token '{self.token_label}'", work)
        return object_id.hex(), self.key(object_id.hex())

    def _find(self, session: Any, id_hex: str) -> tuple[Any, Any]:
        """The private and public key objects with object id ``id_hex``."""
        pkcs11 = _pkcs11()
        object_id = bytes.fromhex(id_hex)
        try:
            private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=object_id)
            public = session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, id=object_id)
        except pkcs11.NoSuchKey:
            raise TokenError(f"key {id_hex} is no longer in the token (deleted from it?)") from None
        return private, public

    def key(self, id_hex: str) -> TokenEcKey | TokenRsaKey:
        """The key pair with object id ``id_hex``, as a ``cryptography`` private key."""
        pkcs11 = _pkcs11()
        private, public = self._run(
            f"cannot read key {id_hex} in token '{self.token_label}'",
            lambda session: self._find(session, id_hex),
        )
        loaded = _public_key(public)
        if private.key_type == pkcs11.KeyType.EC and isinstance(loaded, ec.EllipticCurvePublicKey):
            return TokenEcKey(self, private, loaded, id_hex)
        if private.key_type == pkcs11.KeyType.RSA and isinstance(loaded, rsa.RSAPublicKey):
            return TokenRsaKey(self, private, loaded, id_hex)
        raise TokenError(f"key {id_hex} in token '{self.token_label}' is neither RSA nor EC")

    def key_by_label(self, label: str) -> tuple[str, TokenEcKey | TokenRsaKey]:
        """The one key pair labelled ``label`` (an existing key: ``ca import --token``)."""
        pkcs11 = _pkcs11()

        def work(session: Any) -> list[bytes]:
            found = session.get_objects(
                {
                    pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                    pkcs11.Attribute.LABEL: label,
                }
            )
            return [bytes(obj[pkcs11.Attribute.ID]) for obj in found]

        ids = self._run(f"cannot search token '{self.token_label}'", work)
        if not ids:
            raise TokenError(f"token '{self.token_label}' has no private key labelled '{label}'")
        if len(ids) > 1:
            raise TokenError(
                f"token '{self.token_label}' has {len(ids)} private keys labelled '{label}'"
            )
        if not ids[0]:
            raise TokenError(
                f"the key labelled '{label}' has no object id (CKA_ID): give it one first"
            )
        return ids[0].hex(), self.key(ids[0].hex())

    def keys(self) -> list[TokenKeyInfo]:
        """The private key objects in the token (label, id, type)."""
        pkcs11 = _pkcs11()

        def work(session: Any) -> list[TokenKeyInfo]:
            return [
                TokenKeyInfo(
                    str(obj[pkcs11.Attribute.LABEL]),
                    bytes(obj[pkcs11.Attribute.ID]).hex(),
                    str(obj.key_type.name).lower(),
                )
                for obj in session.get_objects(
                    {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}
                )
            ]

        return self._run(f"cannot list the keys of token '{self.token_label}'", work)

    def check(self, key: TokenEcKey | TokenRsaKey) -> None:
        """Make sure ``key`` can sign now: the session is open (reopened if lost) and the
        token still holds the key under its id with the same public key."""
        self._run(
            f"token '{self.token_label}' cannot sign with key {key.token_id}",
            lambda session: self._current(session, key),
        )

    def destroy(self, id_hex: str) -> None:
        """Delete a key pair certway generated (after a failed CA creation)."""
        pkcs11 = _pkcs11()

        def work(session: Any) -> None:
            for obj in list(session.get_objects({pkcs11.Attribute.ID: bytes.fromhex(id_hex)})):
                obj.destroy()

        self._run(f"cannot delete key {id_hex} in token '{self.token_label}'", work)

    def _current(self, session: Any, key: TokenEcKey | TokenRsaKey) -> Any:
        """The private key object of ``key`` in the current session: the same handle, or
        (after a reconnection) the object found again by id, refused unless its public key
        is the one the key had."""
        if key._generation == self._shared.generation:
            return key._private
        private, public = self._find(session, key.token_id)
        if not _same_public_key(_public_key(public), key.public_key()):
            raise TokenError(
                f"the key with id {key.token_id} in token '{self.token_label}' is no longer "
                "the CA's key (its public key differs): refusing to sign with it"
            )
        key._private, key._generation = private, self._shared.generation
        return private

    def _sign(self, key: TokenEcKey | TokenRsaKey, data: bytes, mechanism_name: str) -> bytes:
        pkcs11 = _pkcs11()
        mechanism = getattr(pkcs11.Mechanism, mechanism_name)
        return self._run(
            f"token '{self.token_label}' could not sign",
            lambda session: bytes(self._current(session, key).sign(data, mechanism=mechanism)),
        )


def _public_key(public: Any) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """A token public key object as a ``cryptography`` public key."""
    pkcs11 = _pkcs11()
    if public.key_type != pkcs11.KeyType.RSA:
        from pkcs11.util.ec import encode_ec_public_key

        loaded = serialization.load_der_public_key(encode_ec_public_key(public))
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        return loaded
    return rsa.RSAPublicNumbers(
        int.from_bytes(public[pkcs11.Attribute.PUBLIC_EXPONENT], "big"),
        int.from_bytes(public[pkcs11.Attribute.MODULUS], "big"),
    ).public_key()


def same_public_key(key: TokenEcKey | TokenRsaKey, cert: x509.Certificate) -> bool:
    """Whether the token key is the key of ``cert``."""
    return _same_public_key(key.public_key(), cert.public_key())


def _same_public_key(a: object, b: object) -> bool:
    def spki(key: object) -> bytes:
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return b""
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(a) == spki(b) != b""


def _not_extractable() -> NoReturn:
    raise TokenError("the key is kept in a PKCS#11 token and cannot be exported")


class _InToken:
    """What every token key shares: its session and object id, its private half never leaves
    the token, and a copy of the key object is the same object (it holds the token session)."""

    def _bind(self, session: TokenSession, private: Any, id_hex: str) -> None:
        self._session = session
        self._private = private  # the handle in session generation ``_generation``
        self._generation = session.generation
        self.token_id = id_hex

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _not_extractable()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self


class TokenEcKey(_InToken, ec.EllipticCurvePrivateKey):
    """An EC key in a token: ``sign()`` hashes here and has the token sign the digest."""

    def __init__(
        self, session: TokenSession, private: Any, public: ec.EllipticCurvePublicKey, id_hex: str
    ) -> None:
        self._bind(session, private, id_hex)
        self._public = public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TokenError("a token EC key signs with ECDSA only")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            h = hashes.Hash(algorithm)
            h.update(bytes(data))
            digest = h.finalize()
        raw = self._session._sign(self, digest, "ECDSA")
        half = len(raw) // 2
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TokenError("a token CA key only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _not_extractable()


class TokenRsaKey(_InToken, rsa.RSAPrivateKey):
    """An RSA key in a token: PKCS#1 v1.5 signatures with SHA-256/384/512, by the token."""

    def __init__(
        self, session: TokenSession, private: Any, public: rsa.RSAPublicKey, id_hex: str
    ) -> None:
        self._bind(session, private, id_hex)
        self._public = public

    def sign(
        self,
        data: Buffer,
        padding: AsymmetricPadding,
        algorithm: utils.Prehashed | hashes.HashAlgorithm | utils.NoDigestInfo,
    ) -> bytes:
        mechanism = (
            _RSA_MECHANISMS.get(algorithm.name)
            if isinstance(algorithm, hashes.HashAlgorithm)
            else None
        )
        if (
            not isinstance(padding, PKCS1v15)
            or isinstance(algorithm, utils.Prehashed)
            or not mechanism
        ):
            raise TokenError("a token RSA key signs with PKCS#1 v1.5 and SHA-256/384/512 only")
        return self._session._sign(self, bytes(data), mechanism)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise TokenError("a token CA key only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _not_extractable()
