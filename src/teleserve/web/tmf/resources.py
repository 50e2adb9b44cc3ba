"""Resource helpers: href, 201 + Location, merge-PATCH bodies, TMF Money.

Money is an integer number of fen everywhere inside Teleserve; a TMF ``Money``
(``{"unit": "CNY", "value": 12.34}``) exists only at this edge. A value with more than
two decimals is refused (422), never rounded (DESIGN.md section 5).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.web.tmf.listing import BadRequest, parse_fields, project


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def href(request: Request, path: str) -> str:
    """Absolute URL of a resource: ``path`` is ``/tmf-api/<api>/v4/<resource>/<id>``."""
    return base_url(request) + path


def single_response(request: Request, resource: dict[str, Any], status: int = 200) -> JSONResponse:
    """One resource, honouring ``fields`` on GET; 201 answers carry ``Location``."""
    fields = parse_fields(request.query_params.get("fields"))
    headers = {"Location": str(resource["href"])} if status == 201 else None
    return JSONResponse(project(resource, fields), status_code=status, headers=headers)


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (POST, or PATCH with merge semantics:
    ``application/json`` or ``application/merge-patch+json``)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(_("The request body is not valid JSON"), code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest(_("The request body must be a JSON object"), code="invalid_json")
    return body


def money_out(fen: int, currency: str) -> dict[str, Any]:
    """fen → TMF Money; the value is a JSON number with at most two decimals."""
    value = Decimal(fen).scaleb(-2)
    return {"unit": currency, "value": float(value)}


def money_in(money: object, currency: str, field: str = "amount") -> int:
    """TMF Money → fen. Refuses another currency, a non-number, and more than two decimals."""
    if not isinstance(money, dict):
        raise ValidationError(
            _("{field} must be a Money object"), code="invalid_money", field=field
        )
    unit = money.get("unit", currency)
    if unit != currency:
        raise ValidationError(
            _("{field} must be in {currency}"),
            code="invalid_currency",
            field=field,
            currency=currency,
        )
    value = money.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(
            _("{field} must be a Money object"), code="invalid_money", field=field
        )
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(
            _("{field} must be a Money object"), code="invalid_money", field=field
        ) from None
    if not amount.is_finite():
        raise ValidationError(
            _("{field} must be a Money object"), code="invalid_money", field=field
        )
    fen = amount.scaleb(2)
    if fen != fen.to_integral_value():
        raise ValidationError(
            _("{field} has more than two decimals"), code="invalid_money", field=field
        )
    return int(fen)
