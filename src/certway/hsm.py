"""Keys in a PKCS#11 token (an HSM, or SoftHSM2 in tests), through python-pkcs11.

A token key is offered to the rest of certway as a ``cryptography`` private key
(``TokenEcKey`` / ``TokenRsaKey``) whose ``sign()`` asks the token: certificate, CRL and OCSP
builders take it like any other key, and the private key never leaves the token (generated
sensitive and non-extractable). One logged-in session per token is kept and reused; a lock
serialises the calls on it. A PIN is never logged nor put in an error message.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import os
import secrets
import threading
from types import ModuleType
from typing import Any, NoReturn, Self

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.utils import Buffer

from certway.errors import PolicyViolation, TokenError

__all__ = ["TOKEN_KEY_TYPES", "TokenEcKey", "TokenKeyInfo", "TokenRsaKey", "TokenSession"]

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
    refused. ``digest`` lets a later opener's PIN be compared without keeping the PIN."""

    def __init__(self, session: Any, digest: bytes) -> None:
        self.session = session
        self.digest = digest
        self.users = 0
        self.lock = threading.Lock()


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
                try:
                    token = lib.get_token(token_label=token_label)
                except pkcs11.NoSuchToken:
                    raise TokenError(
                        f"the module {module} has no token labelled '{token_label}'"
                    ) from None
                except pkcs11.PKCS11Error as exc:
                    _fail(f"cannot find {what}", exc)
                try:
                    session = token.open(user_pin=pin, rw=True)
                except pkcs11.PKCS11Error as exc:
                    _fail(f"cannot log in to {what}", exc)
                login = _logins[(module, token_label)] = _Login(session, digest)
            login.users += 1
        self._login: _Login | None = login
        self._session = login.session
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
            login.session.close()

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
        what = f"cannot generate a {key_type} key in token '{self.token_label}'"
        with self._lock:
            try:
                if family == "ec":
                    params = self._session.create_domain_parameters(
                        pkcs11.KeyType.EC,
                        {
                            pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(
                                _CURVES[param][0]
                            )
                        },
                        local=True,
                    )
                    params.generate_keypair(
                        store=True, label=label, id=object_id, private_template=private_template
                    )
                else:
                    self._session.generate_keypair(
                        pkcs11.KeyType.RSA,
                        int(param),
                        store=True,
                        label=label,
                        id=object_id,
                        private_template=private_template,
                    )
            except pkcs11.PKCS11Error as exc:
                _fail(what, exc)
        return object_id.hex(), self.key(object_id.hex())

    def key(self, id_hex: str) -> TokenEcKey | TokenRsaKey:
        """The key pair with object id ``id_hex``, as a ``cryptography`` private key."""
        pkcs11 = _pkcs11()
        object_id = bytes.fromhex(id_hex)
        with self._lock:
            try:
                private = self._session.get_key(
                    object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=object_id
                )
                public = self._session.get_key(
                    object_class=pkcs11.ObjectClass.PUBLIC_KEY, id=object_id
                )
            except pkcs11.NoSuchKey:
                raise TokenError(
                    f"token '{self.token_label}' has no key with id {id_hex} "
                    "(deleted from the token?)"
                ) from None
            except pkcs11.PKCS11Error as exc:
                _fail(f"cannot read key {id_hex} in token '{self.token_label}'", exc)
            if private.key_type == pkcs11.KeyType.EC:
                from pkcs11.util.ec import encode_ec_public_key

                ec_public = serialization.load_der_public_key(encode_ec_public_key(public))
                assert isinstance(ec_public, ec.EllipticCurvePublicKey)
                return TokenEcKey(self, private, ec_public, id_hex)
            if private.key_type == pkcs11.KeyType.RSA:
                rsa_public = rsa.RSAPublicNumbers(
                    int.from_bytes(public[pkcs11.Attribute.PUBLIC_EXPONENT], "big"),
                    int.from_bytes(public[pkcs11.Attribute.MODULUS], "big"),
                ).public_key()
                return TokenRsaKey(self, private, rsa_public, id_hex)
        raise TokenError(f"key {id_hex} in token '{self.token_label}' is neither RSA nor EC")

    def key_by_label(self, label: str) -> tuple[str, TokenEcKey | TokenRsaKey]:
        """The one key pair labelled ``label`` (an existing key: ``ca import --token``)."""
        pkcs11 = _pkcs11()
        with self._lock:
            try:
                found = list(
                    self._session.get_objects(
                        {
                            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                            pkcs11.Attribute.LABEL: label,
                        }
                    )
                )
                ids = [bytes(obj[pkcs11.Attribute.ID]) for obj in found]
            except pkcs11.PKCS11Error as exc:
                _fail(f"cannot search token '{self.token_label}'", exc)
        if not found:
            raise TokenError(f"token '{self.token_label}' has no private key labelled '{label}'")
        if len(found) > 1:
            raise TokenError(
                f"token '{self.token_label}' has {len(found)} private keys labelled '{label}'"
            )
        if not ids[0]:
            raise TokenError(
                f"the key labelled '{label}' has no object id (CKA_ID): give it one first"
            )
        return ids[0].hex(), self.key(ids[0].hex())

    def keys(self) -> list[TokenKeyInfo]:
        """The private key objects in the token (label, id, type)."""
        pkcs11 = _pkcs11()
        found = []
        with self._lock:
            try:
                for obj in self._session.get_objects(
                    {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}
                ):
                    found.append(
                        TokenKeyInfo(
                            str(obj[pkcs11.Attribute.LABEL]),
                            bytes(obj[pkcs11.Attribute.ID]).hex(),
                            str(obj.key_type.name).lower(),
                        )
                    )
            except pkcs11.PKCS11Error as exc:
                _fail(f"cannot list the keys of token '{self.token_label}'", exc)
        return found

    def destroy(self, id_hex: str) -> None:
        """Delete a key pair certway generated (after a failed CA creation)."""
        pkcs11 = _pkcs11()
        with self._lock:
            try:
                for obj in list(
                    self._session.get_objects({pkcs11.Attribute.ID: bytes.fromhex(id_hex)})
                ):
                    obj.destroy()
            except pkcs11.PKCS11Error as exc:
                _fail(f"cannot delete key {id_hex} in token '{self.token_label}'", exc)

    def _sign(self, private: Any, data: bytes, mechanism_name: str) -> bytes:
        pkcs11 = _pkcs11()
        with self._lock:
            try:
                return bytes(
                    private.sign(data, mechanism=getattr(pkcs11.Mechanism, mechanism_name))
                )
            except pkcs11.PKCS11Error as exc:
                _fail(f"token '{self.token_label}' could not sign", exc)


def _not_extractable() -> NoReturn:
    raise TokenError("the key is kept in a PKCS#11 token and cannot be exported")


class _InToken:
    """What every token key shares: its private half never leaves the token, and a copy of
    the key object is the same object (it holds the token session)."""

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
        self._session = session
        self._private = private
        self._public = public
        self.token_id = id_hex

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
        raw = self._session._sign(self._private, digest, "ECDSA")
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
        self._session = session
        self._private = private
        self._public = public
        self.token_id = id_hex

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
        return self._session._sign(self._private, bytes(data), mechanism)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise TokenError("a token CA key only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _not_extractable()
