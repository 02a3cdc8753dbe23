"""The plain-HTTP publication endpoint: the local CAs' CRLs and OCSP responder.

Routes (no authentication: relying parties fetch these anonymously):

* ``GET|HEAD /crl/{name}.crl`` — the current DER CRL of local CA ``name``
  (``application/pkix-crl``), regenerated when stale; ``/crl/{name}.pem`` — the same in PEM.
  ``ETag`` / ``Last-Modified`` (thisUpdate) with ``Cache-Control: no-cache``: a CRL is
  re-signed at every revocation, so caches revalidate (``If-None-Match`` → 304).
* ``POST /ocsp`` — an ``application/ocsp-request`` body (at most 64 KiB, else 413);
  ``GET /ocsp/{request}`` — the request in base64 (standard or URL-safe alphabet,
  URL-encoded, padding optional; RFC 5019 §5). Both answer ``application/ocsp-response``; a
  successful response may be cached until its nextUpdate (``Cache-Control: max-age``,
  ``Expires``, ``Last-Modified``, ``ETag`` per RFC 5019 §6.2).

Errors outside OCSP are ``application/problem+json``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import urllib.parse
from email.utils import format_datetime

from cryptography.x509 import ocsp
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from certway.errors import CertwayError, NotFound, TokenError
from certway.pki.ocsp_responder import DEFAULT_VALIDITY, respond, unsuccessful
from certway.services.audit import SYSTEM, acting_as
from certway.services.node import Node

__all__ = ["MAX_OCSP_REQUEST", "OCSP_REQUEST_TYPE", "OCSP_RESPONSE_TYPE", "create_publish_app"]

#: Largest OCSP request body accepted (a one-certificate request is about 100 bytes).
MAX_OCSP_REQUEST = 64 * 1024

OCSP_REQUEST_TYPE = "application/ocsp-request"
OCSP_RESPONSE_TYPE = "application/ocsp-response"
_CRL_DER_TYPE = "application/pkix-crl"
_CRL_PEM_TYPE = "application/x-pem-file"

_log = logging.getLogger("certway.publish")


def create_publish_app(node: Node, *, ocsp_validity: dt.timedelta = DEFAULT_VALIDITY) -> FastAPI:
    """The publication app of ``node``; OCSP answers are fresh for ``ocsp_validity``."""
    app = FastAPI(title="certway publication", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _problem(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.api_route("/crl/{name}.crl", methods=["GET", "HEAD"])
    def crl_der(name: str, request: Request) -> Response:
        return _crl_response(node, name, request, pem=False)

    @app.api_route("/crl/{name}.pem", methods=["GET", "HEAD"])
    def crl_pem(name: str, request: Request) -> Response:
        return _crl_response(node, name, request, pem=True)

    @app.post("/ocsp")
    @app.post("/ocsp/")
    async def ocsp_post(request: Request) -> Response:
        body = await _read_limited(request, MAX_OCSP_REQUEST)
        if body is None:
            return _problem(
                413, f"OCSP requests are limited to {MAX_OCSP_REQUEST} bytes", "Too large"
            )
        return await run_in_threadpool(_ocsp_response, node, body, ocsp_validity)

    @app.get("/ocsp/{encoded:path}")
    def ocsp_get(encoded: str) -> Response:
        if len(encoded) > MAX_OCSP_REQUEST * 2:
            return _problem(414, "the OCSP request in the URL is too long", "URI too long")
        der = _decode_get(encoded)
        if der is None:
            body = unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
            return _ocsp_http(body, None, ocsp_validity)
        return _ocsp_response(node, der, ocsp_validity)

    return app


# --------------------------------------------------------------------------- CRLs


def _crl_response(node: Node, name: str, request: Request, *, pem: bool) -> Response:
    try:
        with acting_as(SYSTEM):  # re-signing a stale CRL for anyone: the server's own work
            crl = node.local_ca.current_crl(name)
    except NotFound:
        # A public endpoint: say what is missing, not which CAs exist.
        return _problem(404, f"no CRL is published for '{name}'")
    except CertwayError:
        _log.exception("event=crl-publication-failed ca=%s", name)
        return _problem(503, "the CRL cannot be published right now", "Service unavailable")
    body = crl.pem if pem else crl.der
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(crl.this_update, usegmt=True),
        "Cache-Control": "no-cache",
    }
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_CRL_PEM_TYPE if pem else _CRL_DER_TYPE, headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


# --------------------------------------------------------------------------- OCSP


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _decode_get(encoded: str) -> bytes | None:
    """The DER request from the last path segment(s) of a GET (RFC 5019 §5), else None."""
    text = urllib.parse.unquote(encoded).strip()  # the server decoded once; some encode twice
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    if not text:
        return None
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _ocsp_response(node: Node, der: bytes, validity: dt.timedelta) -> Response:
    at = node.clock.now()
    try:
        body = respond(der, lookup=node.local_ca.ocsp_lookup, at=at, validity=validity)
    except TokenError as exc:  # the CA's token is unavailable for now (an alarm says so)
        _log.error("event=ocsp-unavailable error=%r", str(exc))
        body = unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    except Exception:
        _log.exception("the OCSP responder failed; answering internalError")
        body = unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
    return _ocsp_http(body, at, validity)


def _ocsp_http(body: bytes, at: dt.datetime | None, validity: dt.timedelta) -> Response:
    """``body`` with the HTTP caching headers of RFC 5019 §6.2 when it is a successful
    response produced at ``at`` (fresh until ``at + validity``); error answers are not
    cached."""
    headers = {"Cache-Control": "no-store"}
    successful = (
        at is not None
        and ocsp.load_der_ocsp_response(body).response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    )
    if successful and at is not None:
        max_age = max(0, int(validity.total_seconds()))
        headers = {
            "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
            "Last-Modified": format_datetime(at, usegmt=True),
            "Expires": format_datetime(at + validity, usegmt=True),
            "ETag": '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        }
    return Response(body, media_type=OCSP_RESPONSE_TYPE, headers=headers)


# --------------------------------------------------------------------------- errors


_TITLES = {404: "Not Found", 405: "Method Not Allowed", 413: "Too large"}


def _problem(status: int, detail: str, title: str | None = None) -> JSONResponse:
    """An RFC 9457 problem document."""
    return JSONResponse(
        {
            "type": "about:blank",
            "title": title or _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
        },
        status_code=status,
        media_type="application/problem+json",
    )
