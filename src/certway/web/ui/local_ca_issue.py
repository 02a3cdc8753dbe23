"""Local CA page: "issue key + certificate → PKCS#12 download" for browser client
certificates. The key is generated on the server, handed over once in a PKCS#12 protected by
the passphrase the administrator gives, and never stored."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from certway.errors import CertwayError, PolicyViolation
from certway.web.ui.kit import Form, UiRoute, View, download, redirect_after, run, submit
from certway.web.ui.local_ca import with_ca

__all__ = ["MIN_PASSPHRASE", "P12_TYPE", "router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)

P12_TYPE = "application/x-pkcs12"
MIN_PASSPHRASE = 8
"""Shortest PKCS#12 passphrase the form accepts (the file goes through a browser download)."""


def _passphrase(form: Form) -> bytes:
    """The passphrase fields, taken out of the form so that no page can show them again."""
    first = (form.fields.pop("passphrase", None) or [""])[0]
    again = (form.fields.pop("passphrase_again", None) or [""])[0]
    if not first:
        raise PolicyViolation("passphrase", "give a passphrase: the PKCS#12 holds a private key")
    if len(first) < MIN_PASSPHRASE:
        raise PolicyViolation(
            "passphrase", f"the passphrase must be at least {MIN_PASSPHRASE} characters long"
        )
    if first != again:
        raise PolicyViolation("passphrase", "the two passphrases differ")
    return first.encode()


def _issue(view: View, form: Form, passphrase: bytes) -> tuple[bytes, str]:
    cn = form.get("cn")
    if not cn:
        raise PolicyViolation("input", "give the common name of the certificate")
    issued = view.node.local_ca.issue_with_key(
        form.get("ca"),
        cn,
        alt_names=form.split("sans"),
        profile=form.get("profile", "client"),
        key_type=form.get("key_type", "ec:p256"),
        days=form.integer("days", "the validity in days", 365),
    )
    return issued.pkcs12(passphrase, friendly_name=cn), cn


@router.post("/local-ca/issue")
async def local_ca_issue(request: Request) -> Response:
    """Issue a new key and certificate: the answer is the .p12 download; on an error, a
    redirect to the Local CA page with the issuing CA still chosen, which shows the message
    once and the form (never the passphrases) filled in again."""
    view, form = await submit(request)

    def act() -> Response:
        try:
            p12, cn = _issue(view, form, _passphrase(form))
        except CertwayError as exc:
            view.failed(exc)
            return redirect_after(view, with_ca(form), form)
        return download(p12, f"{cn}.p12", P12_TYPE)

    return await run(view, act)
