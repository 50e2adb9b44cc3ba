"""Money is an integer number of minor units (fen) everywhere inside Teleserve.

Decimal amounts exist only at the edge (TMF ``Money`` ``{unit, value}``); converting
refuses more than two decimals rather than rounding someone's money away.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _

MINOR_PER_MAJOR = 100
_CENT = Decimal("0.01")


def to_minor(value: Decimal | str | int | float) -> int:
    """Major units (``"12.34"``) to minor units (``1234``); >2 decimals is an error."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(_("Not an amount: {value}"), value=value) from None
    if not amount.is_finite():
        raise ValidationError(_("Not an amount: {value}"), value=value)
    if amount != amount.quantize(_CENT):
        raise ValidationError(_("An amount has at most two decimals: {value}"), value=value)
    return int(amount * MINOR_PER_MAJOR)


def to_major(minor: int) -> Decimal:
    """Minor units to a two-decimal ``Decimal`` for display and TMF ``Money``."""
    return (Decimal(minor) / MINOR_PER_MAJOR).quantize(_CENT)


def round_half_up(value: Decimal) -> int:
    """Round a rated (fractional) minor-unit amount to whole fen, half-up: the one
    documented rounding rule, applied once per line."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def require_positive(minor: int, field: str = "amount") -> int:
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise ValidationError(_("{field} must be a whole number of fen"), field=field)
    if minor <= 0:
        raise ValidationError(_("{field} must be positive"), field=field)
    return minor


def format_money(minor: int, currency: str = "CNY") -> str:
    symbol = "¥" if currency == "CNY" else f"{currency} "
    sign = "-" if minor < 0 else ""
    return f"{sign}{symbol}{to_major(abs(minor)):,}"
