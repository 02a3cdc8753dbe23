"""The few OpenSSL settings Python's ``ssl`` (3.11) has no API for, reached through ``ctypes``.

Python's ``SSLContext`` wraps an OpenSSL ``SSL_CTX``; its pointer follows the object header.
``ssl_ctx_of`` finds it and makes sure it is the context's (its options and verify mode must
be the ones Python reports) before anything is called on it; every caller falls back (and
says so) when the functions or the pointer cannot be found. Used for:

- ``set_accept_all_verify``: client certificates accepted by OpenSSL, judged by certway;
- ``set_groups``: the key exchange groups offered and accepted (``SSL_CTX_set1_groups_list``;
  ``SSLContext.set_ecdh_curve`` allows one curve only).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import ssl
from collections.abc import Sequence
from typing import Any

__all__ = ["set_accept_all_verify", "set_groups", "ssl_ctx_of"]

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_OPENSSL_VERIFY_MODES = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}
_SSL_CTRL_SET_GROUPS_LIST = 92  # ssl.h: SSL_CTX_set1_groups_list is SSL_CTX_ctrl(ctx, 92, 0, s)


@functools.cache
def _openssl() -> tuple[Any, Any] | None:
    """libssl's functions as linked into Python's ``_ssl`` and the accept-all callback."""
    try:
        module = importlib.import_module("_ssl")
        lib = ctypes.CDLL(getattr(module, "__file__", None))
        set_callback = lib.SSL_CTX_set_cert_verify_callback
        set_callback.argtypes = [ctypes.c_void_p, _VerifyCallback, ctypes.c_void_p]
        set_callback.restype = None
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError, ImportError):
        return None
    # The peer still proves it holds the certificate's key (CertificateVerify); only the chain
    # checks move from OpenSSL to certway's validation.
    accept_all = _VerifyCallback(lambda _store, _arg: 1)
    return lib, accept_all


def ssl_ctx_of(context: ssl.SSLContext) -> tuple[Any, int] | None:
    """libssl and the ``SSL_CTX`` address of ``context``, or None when it cannot be found
    with certainty."""
    found = _openssl()
    if found is None:
        return None
    lib = found[0]
    # CPython's SSLContext object is PyObject_HEAD followed by its SSL_CTX pointer.
    address = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not address:
        return None
    # Make sure it is the SSL_CTX: its options and verify mode must be the context's.
    if lib.SSL_CTX_get_options(address) != int(context.options):
        return None
    if lib.SSL_CTX_get_verify_mode(address) != _OPENSSL_VERIFY_MODES[context.verify_mode]:
        return None
    return lib, address


def set_accept_all_verify(context: ssl.SSLContext) -> bool:
    """Make OpenSSL accept any client certificate on ``context``. False when it cannot be
    done safely (nothing was changed)."""
    found = ssl_ctx_of(context)
    if found is None:
        return False
    lib, address = found
    lib.SSL_CTX_set_cert_verify_callback(address, _openssl()[1], None)  # type: ignore[index]
    return True


def set_groups(context: ssl.SSLContext, groups: Sequence[str]) -> bool:
    """Restrict the key exchange groups of ``context`` to ``groups`` (OpenSSL names such as
    ``X25519``, ``P-256``), in order of preference. False when it cannot be done (nothing
    was changed, OpenSSL's defaults stay)."""
    found = ssl_ctx_of(context)
    if found is None:
        return False
    lib, address = found
    text = ctypes.create_string_buffer(":".join(groups).encode("ascii"))
    return bool(lib.SSL_CTX_ctrl(address, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.addressof(text)))
