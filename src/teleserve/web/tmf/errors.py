"""The TMF error body for everything that goes wrong under ``/tmf-api``.

Domain errors already answer ``{code, reason, message, status, @type: "Error"}`` (see
``teleserve.web.app``). This module gives the same shape to what FastAPI itself refuses
before a handler runs — an unknown path (404), a method a resource does not allow (405),
a malformed body or parameter (400) — so a client parses one error format.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from teleserve.core.i18n import _, normalize_locale, translate

TMF_PREFIX = "/tmf-api/"

_REASONS = {
    400: _("The request is malformed"),
    401: _("Authentication is required"),
    403: _("You are not allowed to do this"),
    404: _("No such resource"),
    405: _("This method is not allowed on this resource"),
    409: _("The request conflicts with the current state"),
    415: _("Unsupported media type"),
    422: _("The request cannot be processed"),
    500: _("Internal error"),
}


def error_body(status: int, code: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "reason": reason,
        "message": message,
        "status": str(status),
        "@type": "Error",
    }


def tmf_error(
    request: Request, status: int, code: str, reason_id: str, **params: Any
) -> JSONResponse:
    locale = normalize_locale(request.headers.get("accept-language"))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        error_body(
            status,
            code,
            translate(reason_id, "en", **params),
            translate(reason_id, locale, **params),
        ),
        status_code=status,
        headers=headers,
    )


def _is_tmf(request: Request) -> bool:
    return request.url.path.startswith(TMF_PREFIX)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _is_tmf(request):
            return await http_exception_handler(request, exc)
        reason = _REASONS.get(exc.status_code, _REASONS[400])
        response = tmf_error(request, exc.status_code, f"http_{exc.status_code}", reason)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not _is_tmf(request):
            return await request_validation_exception_handler(request, exc)
        locale = normalize_locale(request.headers.get("accept-language"))
        # Which parameter was wrong, for the developer reading the answer.
        details = "; ".join(
            ".".join(str(p) for p in error.get("loc", ())) + ": " + str(error.get("msg", ""))
            for error in exc.errors()
        )
        reason = translate(_REASONS[400], "en")
        message = f"{translate(_REASONS[400], locale)}: {details}" if details else reason
        return JSONResponse(error_body(400, "bad_request", reason, message), status_code=400)
