"""What the API's routers share: the node of the request, PEM-or-base64 input, the base of the
response models, and file downloads."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from certway.errors import DecodeError, PolicyViolation
from certway.services.node import Node

__all__ = [
    "MAX_DAYS",
    "PEM_FILE",
    "Data",
    "Days",
    "Out",
    "Timestamp",
    "Version",
    "blob",
    "file_answer",
    "node_of",
    "pem_download",
    "required",
]


def node_of(request: Request) -> Node:
    node: Node = request.app.state.web.node
    return node


def blob(text: str | None, what: str) -> bytes | None:
    """PEM text as it is, anything else as base64 of DER."""
    if text is None or text == "":
        return None
    if "-----BEGIN" in text:
        return text.encode("utf-8")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what} is neither PEM nor base64 of DER") from None


def required(text: str, what: str) -> bytes:
    data = blob(text, what)
    if data is None:
        raise PolicyViolation("empty", f"{what} is empty")
    return data


MAX_DAYS = 36_500
"""Longest validity the API accepts (100 years): more overflows the date arithmetic."""
Days = Annotated[int, Field(le=MAX_DAYS, description=f"validity in days, at most {MAX_DAYS}")]
Version = Annotated[int, PathParam(ge=0, le=2**31 - 1)]

Timestamp = Annotated[
    str, Field(description="ISO 8601 date and time", json_schema_extra={"format": "date-time"})
]
"""A date and time as the services write it (``datetime.isoformat()``), passed through as
text so the body stays exactly what it is."""


class Out(BaseModel):
    """The base of the response models: a body with a key the model does not name is an error
    (a 500 the tests see), never a key silently dropped. Routes answer with
    ``response_model_exclude_unset``, so keys a body leaves out stay out."""

    model_config = ConfigDict(extra="forbid")


class Data(BaseModel):
    data: str = Field(description="PEM, or base64 of DER")


def file_answer(media_type: str, what: str) -> dict[str, Any]:
    """Route options that describe a file download in the API's description."""
    return {
        "response_class": Response,
        "responses": {
            200: {
                "description": what,
                "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    }


PEM_FILE = file_answer("application/x-pem-file", "PEM file")


def pem_download(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
