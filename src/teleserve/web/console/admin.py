"""Small helpers of the console's administration pages (catalog, number pool): reading
form fields into the types the services take, showing amounts, and naming org units.

Amounts are typed and shown in yuan (what staff read on a price list) and handed to the
services in fen. A field that does not parse is a ``ValidationError`` naming the field's
label, so the form can show it beside the other messages; nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from teleserve.core.errors import DomainError, PermissionDenied, ValidationError
from teleserve.core.i18n import _
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam

MAX_FEN = 10**12  # ten billion yuan: far above any price, far below the column's range
MAX_COUNT = 10**9


def parse_yuan(text: str, label: str) -> int:
    """``"58"`` / ``"58.5"`` / ``"58.00"`` yuan as fen; empty is zero."""
    value = _decimal(text, label)
    if value is None:
        return 0
    exponent = value.as_tuple().exponent
    if value < 0 or (isinstance(exponent, int) and exponent < -2) or value * 100 >= MAX_FEN:
        raise ValidationError(
            _("{field} must be an amount in yuan, zero or more, with at most two decimals"),
            field=label,
        )
    return int(value * 100)


def parse_rate_yuan(text: str, label: str, decimals: int) -> Decimal:
    """A usage rate typed in yuan per unit as an exact rate in fen per unit (the
    service's unit); ``decimals`` is how many decimals of a fen the service keeps."""
    value = _decimal(text, label)
    if value is None:
        return Decimal(0)
    exponent = value.as_tuple().exponent
    if value < 0 or (isinstance(exponent, int) and exponent < -(decimals + 2)):
        raise ValidationError(
            _("{field} must be a rate in yuan, zero or more, with at most {decimals} decimals"),
            field=label,
            decimals=decimals + 2,
        )
    fen = value.scaleb(2)
    return fen.quantize(Decimal(1)) if fen == fen.to_integral_value() else fen.normalize()


def parse_count(text: str, label: str) -> int:
    """A whole number, zero or more; empty is zero."""
    stripped = text.strip()
    if not stripped:
        return 0
    if not stripped.isdigit() or not stripped.isascii() or int(stripped) >= MAX_COUNT:
        raise ValidationError(_("{field} must be a whole number, zero or more"), field=label)
    return int(stripped)


def parse_local_datetime(text: str, label: str, zone: ZoneInfo) -> datetime | None:
    """An ``<input type="datetime-local">`` value in the operator's time zone, as an
    aware datetime; empty is None."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValidationError(_("{field} is not a valid date and time"), field=label) from None
    if parsed.tzinfo is not None:
        raise ValidationError(_("{field} is not a valid date and time"), field=label)
    return parsed.replace(tzinfo=zone)


def local_input(value: datetime | None, zone: ZoneInfo) -> str:
    """The value of a ``datetime-local`` input for ``value``."""
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if value is not None else ""


def yuan_text(fen: int) -> str:
    """Fen as the plain yuan amount a form field shows: ``5800`` → ``58.00``."""
    return f"{Decimal(fen).scaleb(-2):.2f}"


def rate_yuan_text(fen: Decimal) -> str:
    """A rate in fen per unit as yuan per unit, two decimals at least: ``15`` → ``0.15``,
    ``0.03`` → ``0.0003``."""
    yuan = Decimal(fen).scaleb(-2).normalize()
    exponent = yuan.as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{yuan:.{places}f}"


def _decimal(text: str, label: str) -> Decimal | None:
    stripped = text.strip().replace(",", "")
    if not stripped:
        return None
    try:
        value = Decimal(stripped)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not stripped.isascii():
        raise ValidationError(_("{field} must be a number"), field=label)
    return value


# A refusal as a form's message area shows it: the message id and its params.
FormError = tuple[str, dict[str, Any]]


def form_error(error: DomainError, labels: Mapping[str, str] | None = None) -> FormError:
    """A service's refusal for the form's message area: the message id and its params,
    with a field name the service used (``monthly_fee``) replaced by the form's label."""
    params = dict(error.params)
    field = params.get("field")
    if isinstance(field, str) and labels and field in labels:
        params["field"] = labels[field]
    return error.message, params


def org_names(uow: UnitOfWork, locale: str) -> dict[str, str]:
    """Names of the org units the actor sees, by path; empty without ``iam.orgs.read``
    (pages then show the paths themselves)."""
    try:
        units = iam.list_org_units(uow)
    except PermissionDenied:
        return {}
    return {u.path: u.name_en if locale == "en" else u.name_zh for u in units}


def name_of(names: Mapping[str, str]) -> Callable[[str], str]:
    """For templates: an org path's unit name, or the path when it has none."""
    return lambda path: names.get(path, path)
