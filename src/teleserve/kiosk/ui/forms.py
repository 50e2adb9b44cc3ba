"""What the keypads send, checked before anything is asked of the devices or the server.
A bad value raises ``InputError`` with a message id; nothing has changed then."""

from __future__ import annotations

import re

from teleserve.core.i18n import _

# PROTOCOL.md allows ``[0-9A-Za-z._@-]{3,32}``; the kiosk keypad has digits only (a
# mobile number, a fixed line with its area code, a numeric broadband account).
_NUMBER = re.compile(r"[0-9]{3,32}")
_PASSWORD = re.compile(r"[0-9]{6}")  # the customers service's six-digit service password
_SERIAL = re.compile(r"[0-9]{1,10}")
_AMOUNT = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,2}))?")

BAD_NUMBER = _("Please enter the number with the digits only (3 to 32 digits)")
BAD_PASSWORD = _("The service password has six digits")
BAD_SERIAL = _("Please enter the serial number printed on the receipt")
BAD_AMOUNT = _("Please enter an amount in yuan, such as 50 or 50.5")
AMOUNT_TOO_LOW = _("The amount must be positive")
AMOUNT_TOO_HIGH = _("The most a card payment can be here is ¥{limit}")


class InputError(ValueError):
    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


def number(value: str | None) -> str:
    text = (value or "").strip()
    if not _NUMBER.fullmatch(text):
        raise InputError(BAD_NUMBER)
    return text


def password(value: str | None) -> str:
    text = value or ""
    if not _PASSWORD.fullmatch(text):
        raise InputError(BAD_PASSWORD)
    return text


def serial(value: str | None) -> int:
    text = (value or "").strip()
    if not _SERIAL.fullmatch(text) or int(text) == 0:
        raise InputError(BAD_SERIAL)
    return int(text)


def amount_fen(value: str | None, limit_fen: int) -> int:
    """``"50"`` → 5000, ``"50.5"`` → 5050: yuan as typed, to integer fen without floats."""
    match = _AMOUNT.fullmatch((value or "").strip())
    if match is None:
        raise InputError(BAD_AMOUNT)
    whole, part = match.group(1), (match.group(2) or "").ljust(2, "0")
    fen = int(whole) * 100 + int(part)
    if fen <= 0:
        raise InputError(AMOUNT_TOO_LOW)
    if fen > limit_fen:
        raise InputError(AMOUNT_TOO_HIGH, limit=money(limit_fen))
    return fen


def money(fen: int) -> str:
    """``12345`` → ``123.45``, ``-150`` → ``-1.50`` (a balance can be negative)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"
