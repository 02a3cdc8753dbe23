"""Key generation, loading and serialisation.

Key types are named as on the command line: ``rsa:2048``, ``rsa:3072``, ``rsa:4096``,
``ec:p256``, ``ec:p384``, ``ec:p521``, ``ed25519``.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki.encoding import is_pem as has_pem_block
from certway.pki.load import error_reason, refuse_text

__all__ = [
    "KEY_TYPES",
    "PrivateKey",
    "PublicKey",
    "check_public_key",
    "describe_key",
    "generate_key",
    "key_matches",
    "key_type_label",
    "load_private_key",
    "private_key_der",
    "private_key_pem",
    "public_key_der",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_CURVE_LABELS = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

KEY_TYPES: tuple[str, ...] = (
    "rsa:2048",
    "rsa:3072",
    "rsa:4096",
    "ec:p256",
    "ec:p384",
    "ec:p521",
    "ed25519",
)

MIN_RSA_BITS = 2048


def generate_key(key_type: str) -> PrivateKey:
    """Generate a private key of ``key_type`` (one of ``KEY_TYPES``)."""
    if key_type not in KEY_TYPES:
        raise PolicyViolation(
            "key-type", f"unknown key type '{key_type}'; choose one of {', '.join(KEY_TYPES)}"
        )
    family, _, param = key_type.partition(":")
    if family == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(param))
    if family == "ec":
        return ec.generate_private_key(_CURVES[param]())
    return ed25519.Ed25519PrivateKey.generate()


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM or DER private key (PKCS#8 or traditional), optionally encrypted."""
    stripped = data.strip()
    is_pem = stripped.startswith(b"-----BEGIN")
    if is_pem and b"PRIVATE KEY-----" not in stripped:
        raise DecodeError("not a private key: the PEM block is not a PRIVATE KEY")
    if not has_pem_block(data):
        refuse_text(data, "a private key")
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        key = loader(stripped if is_pem else data, password=passphrase or None)
    except TypeError as exc:
        # Raised by cryptography for "password given but key not encrypted" and the reverse.
        if passphrase:
            raise PassphraseError(
                "a passphrase was given but the private key is not encrypted"
            ) from exc
        raise PassphraseError("the private key is encrypted: give its passphrase") from exc
    except ValueError as exc:
        encrypted = b"ENCRYPTED" in stripped or b"Proc-Type: 4,ENCRYPTED" in stripped
        if passphrase and (encrypted or not is_pem):
            raise PassphraseError("wrong passphrase for the private key") from exc
        raise DecodeError("not a readable private key (malformed or truncated PEM/DER)") from exc
    except UnsupportedAlgorithm as exc:
        raise DecodeError(f"unsupported private key algorithm: {error_reason(exc)}") from exc
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise PolicyViolation(
            "key-type", f"unsupported key type {type(key).__name__}: use RSA, ECDSA or Ed25519"
        )
    check_public_key(key.public_key())
    return key


def check_public_key(public_key: object) -> PublicKey:
    """Refuse keys too weak (RSA < 2048) or of a kind we do not support."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise PolicyViolation(
                "weak-key",
                f"RSA key of {public_key.key_size} bits is too weak: at least {MIN_RSA_BITS} "
                "bits are required",
            )
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _CURVE_LABELS:
            raise PolicyViolation(
                "weak-key",
                f"elliptic curve {public_key.curve.name} is not supported: use P-256, P-384 "
                "or P-521",
            )
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    raise PolicyViolation("key-type", f"unsupported public key type {type(public_key).__name__}")


def describe_key(key: PrivateKey | PublicKey) -> str:
    """A short public description such as ``RSA 2048`` or ``ECDSA P-256``: no key material."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_LABELS.get(key.curve.name, key.curve.name)}"
    return "Ed25519"


def key_type_label(key_type: str) -> str:
    """What :func:`describe_key` says of a key of ``key_type`` (one of ``KEY_TYPES``), before
    it is generated: ``rsa:4096`` is ``RSA 4096``, ``ec:p256`` ``ECDSA P-256``."""
    if key_type not in KEY_TYPES:
        raise PolicyViolation(
            "key-type", f"unknown key type '{key_type}'; choose one of {', '.join(KEY_TYPES)}"
        )
    family, _, param = key_type.partition(":")
    if family == "rsa":
        return f"RSA {param}"
    if family == "ec":
        return f"ECDSA {_CURVE_LABELS[_CURVES[param]().name]}"
    return "Ed25519"


def public_key_der(key: PrivateKey | PublicKey) -> bytes:
    public: PublicKey
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        public = key.public_key()
    else:
        public = key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(private_key: PrivateKey, public_key: object) -> bool:
    """True when ``public_key`` is the public half of ``private_key``."""
    if not isinstance(
        public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    ):
        return False
    return public_key_der(private_key) == public_key_der(public_key)


def _encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    if passphrase is None:
        return serialization.NoEncryption()
    if not passphrase:
        raise PassphraseError("the passphrase is empty")
    return serialization.BestAvailableEncryption(passphrase)


def private_key_pem(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted (AES-256-CBC, scrypt/PBKDF2 per OpenSSL defaults) with a passphrase."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(passphrase)
    )


def private_key_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER: only for the key vault, which encrypts it before storing."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
