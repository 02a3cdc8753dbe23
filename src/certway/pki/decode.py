"""Decode any PKI object from its bytes: what it is, as readable text and as JSON facts.

:func:`detect` loads whatever ``data`` holds (:func:`certway.pki.load.load_any`: a
certificate or a bundle of them, a CSR, a CRL, a PKCS#7 or PKCS#12 bundle, a private or a
public key) into a :class:`Decoded`, which renders (:mod:`certway.pki.render`) as text
close to ``openssl x509|req|crl -text`` and as a JSON-serialisable dict.

Private keys are summarised by type, size, curve and the SHA-256 fingerprint of their
public key: no private number, and no part of the encoding, ever reaches the output.

Anything that is not one of those objects raises :class:`~certway.errors.DecodeError`
with a one-line message; an encrypted object without (or with a wrong) passphrase raises
:class:`~certway.errors.PassphraseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certway.errors import DecodeError
from certway.pki.load import PARSE_ERRORS, DecodedObject, ObjectKind, error_reason, load_any
from certway.pki.render import object_facts, object_kind, object_text

__all__ = ["Decoded", "detect"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """The objects found in one input.

    ``kind`` is what the input is as a whole (the kind of its first PEM block when a PEM
    file mixes several); ``objects`` holds the parsed ``cryptography`` objects: one per
    PEM block, every certificate of a PKCS#7 bundle, or a single
    ``PKCS12KeyAndCertificates``. ``encoding`` is ``"PEM"`` or ``"DER"``.
    """

    kind: ObjectKind
    objects: tuple[DecodedObject, ...]
    encoding: str = "DER"

    def to_text(self) -> str:
        """Readable text, close to ``openssl <x509|req|crl|pkcs7|pkcs12> -text``."""
        if len(self.objects) == 1 and self.kind is not ObjectKind.PKCS7:
            return "\n".join(object_text(self.objects[0])) + "\n"
        count = len(self.objects)
        if self.kind is ObjectKind.PKCS7:
            lines = [f"PKCS#7 bundle: {count} certificate{'s' if count != 1 else ''}"]
        else:
            lines = [f"{count} objects"]
        for index, obj in enumerate(self.objects, start=1):
            lines.append("")
            lines.append(f"[{index}/{count}] {object_kind(obj)}")
            lines.extend(object_text(obj))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The same facts as JSON-serialisable data: a flat dict for one object, else
        ``{"kind": ..., "encoding": ..., "items": [...]}`` (always ``items`` for PKCS#7)."""
        if len(self.objects) == 1 and self.kind is not ObjectKind.PKCS7:
            facts = object_facts(self.objects[0])
            return {"kind": self.kind.value, "encoding": self.encoding, **facts}
        return {
            "kind": self.kind.value,
            "encoding": self.encoding,
            "items": [object_facts(obj) for obj in self.objects],
        }


def detect(data: bytes, passphrase: bytes | None = None) -> Decoded:
    """Decode ``data`` (PEM or DER), figuring out from its content what it holds.

    ``passphrase`` decrypts an encrypted private key or PKCS#12 file; a PKCS#12 file
    without one is tried with an empty passphrase. Raises ``DecodeError`` for anything
    that is not a PKI object and ``PassphraseError`` for a missing or wrong passphrase.
    """
    decoded = Decoded(*load_any(data, passphrase))
    # cryptography parses names, extensions and CRL entries lazily: render once so a
    # malformed part is reported now, as a DecodeError, and never later by to_text().
    try:
        decoded.to_dict()
        decoded.to_text()
    except PARSE_ERRORS as exc:
        raise DecodeError(f"malformed {decoded.kind.value}: {error_reason(exc)}") from exc
    return decoded
