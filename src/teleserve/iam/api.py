"""OAuth2 token endpoint for API clients (RFC 6749 section 4.4, client credentials).

``POST /oauth/token`` with ``grant_type=client_credentials`` and the client's credentials
in HTTP Basic (preferred) or in the form body (``client_id`` / ``client_secret``), and an
optional space-separated ``scope`` narrower than the client's. The answer is a bearer
token (RFC 6750) and the scopes granted; errors use RFC 6749 section 5.2's body
(``error``, ``error_description`` in the request's language).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from teleserve.core.errors import AuthenticationFailed, DomainError
from teleserve.core.i18n import _, normalize_locale, translate
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service

router = APIRouter(tags=["oauth2"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(
    status: int, error: str, description: str, locale: str, *, basic: bool = False
) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="teleserve"' if basic else "Bearer"
    return JSONResponse(
        status_code=status,
        content={"error": error, "error_description": description},
        headers=headers,
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    return (unquote(client_id), unquote(secret)) if sep else None


@router.post("/oauth/token", summary="Issue a bearer token (OAuth2 client credentials)")
def token(
    request: Request,
    grant_type: Annotated[str, Form()],
    scope: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    locale = normalize_locale(request.headers.get("accept-language"))
    authorization = request.headers.get("authorization")
    basic = _basic_credentials(authorization)
    if authorization and basic is None:
        return _error(
            401,
            "invalid_client",
            translate(_("Malformed client credentials"), locale),
            locale,
            basic=True,
        )
    if basic is not None and client_id is not None:
        return _error(
            400,
            "invalid_request",
            translate(_("Send the client credentials once: HTTP Basic or the form"), locale),
            locale,
        )
    if grant_type != "client_credentials":
        return _error(
            400,
            "unsupported_grant_type",
            translate(_("Only the client_credentials grant is supported"), locale),
            locale,
        )
    cid, secret = basic if basic is not None else (client_id or "", client_secret or "")
    try:
        with UnitOfWork(request.app.state.engine, locale=locale) as uow:
            issued = service.issue_token(uow, cid, secret, scope)
            uow.commit()
    except AuthenticationFailed as exc:
        return _error(401, "invalid_client", exc.render(locale), locale, basic=basic is not None)
    except DomainError as exc:
        code = "invalid_scope" if exc.code == "invalid_scope" else "invalid_request"
        return _error(400, code, exc.render(locale), locale)
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.scopes),
        },
        headers=_NO_STORE,
    )
