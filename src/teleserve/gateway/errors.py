"""TSP/1 error codes, their messages in both languages, and the error body.

The English message is the message id (``_()``); the Chinese one comes from
``locales/zh_CN/LC_MESSAGES/gateway.po``. Both travel in every error body, so a terminal
shows the customer's language without a second catalog of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teleserve.core.errors import DomainError
from teleserve.core.i18n import _, translate


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    message: str
    # Answered with an all-zero MAC and session_id 00000000: the server cannot or must
    # not authenticate the reply (PROTOCOL.md, "MAC").
    zero_mac: bool = False
    # The server closes the connection after sending it.
    closes: bool = False


MALFORMED = "10001"
BAD_MAC = "10002"
SERIAL_CONFLICT = "10003"
UNKNOWN_SERV_TYPE = "10004"
INVALID_FIELDS = "10005"
CLOCK_SKEW = "10006"
NO_SESSION = "10007"
UNKNOWN_TERMINAL = "10008"
OUT_OF_SERVICE = "10009"
AUTH_FAILED = "20001"
CUSTOMER_LOCKED = "20002"
SUBSCRIBER_NOT_FOUND = "20003"
INSUFFICIENT_BALANCE = "20004"
STATUS_NOT_ALLOWED = "20005"
OFFER_NOT_ELIGIBLE = "20006"
AMOUNT_INVALID = "20007"
ORIGINAL_NOT_FOUND = "20008"
NOT_REVERSIBLE = "20009"
CUSTOMER_SESSION_ENDED = "20010"
LEVEL_TOO_LOW = "20011"
TOO_MANY_REQUESTS = "20012"
BILLING_UNAVAILABLE = "30001"
BILLING_REJECTED = "30002"
INTERNAL = "90001"
BUSY = "90002"

ERRORS: dict[str, ErrorSpec] = {
    e.code: e
    for e in (
        ErrorSpec(MALFORMED, _("malformed frame"), zero_mac=True, closes=True),
        ErrorSpec(BAD_MAC, _("MAC check failed"), zero_mac=True),
        ErrorSpec(SERIAL_CONFLICT, _("serial already recorded with a different body")),
        ErrorSpec(UNKNOWN_SERV_TYPE, _("unknown serv_type")),
        ErrorSpec(INVALID_FIELDS, _("body fails validation")),
        ErrorSpec(CLOCK_SKEW, _("timestamp outside the window")),
        ErrorSpec(NO_SESSION, _("no valid session on this connection"), zero_mac=True),
        ErrorSpec(
            UNKNOWN_TERMINAL, _("terminal unknown or decommissioned"), zero_mac=True, closes=True
        ),
        ErrorSpec(OUT_OF_SERVICE, _("terminal out of service")),
        ErrorSpec(AUTH_FAILED, _("customer authentication failed")),
        ErrorSpec(CUSTOMER_LOCKED, _("customer temporarily locked after too many failures")),
        ErrorSpec(SUBSCRIBER_NOT_FOUND, _("subscriber not found")),
        ErrorSpec(INSUFFICIENT_BALANCE, _("insufficient balance or credit")),
        ErrorSpec(STATUS_NOT_ALLOWED, _("not allowed in the subscriber's current status")),
        ErrorSpec(OFFER_NOT_ELIGIBLE, _("offer not eligible for this subscriber")),
        ErrorSpec(AMOUNT_INVALID, _("amount invalid")),
        ErrorSpec(ORIGINAL_NOT_FOUND, _("original transaction not found")),
        ErrorSpec(NOT_REVERSIBLE, _("original transaction cannot be reversed")),
        ErrorSpec(CUSTOMER_SESSION_ENDED, _("customer session expired or ended")),
        ErrorSpec(LEVEL_TOO_LOW, _("this request needs a stronger customer authentication level")),
        ErrorSpec(TOO_MANY_REQUESTS, _("too many requests for this number or terminal")),
        ErrorSpec(BILLING_UNAVAILABLE, _("billing system unavailable")),
        ErrorSpec(BILLING_REJECTED, _("billing system rejected the request")),
        ErrorSpec(INTERNAL, _("internal error; nothing was changed")),
        ErrorSpec(BUSY, _("server busy")),
    )
}

ZERO_MAC_CODES = frozenset(code for code, spec in ERRORS.items() if spec.zero_mac)


def error_body(code: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of a response whose err_number is ``code``, in PROTOCOL.md's key order."""
    message = ERRORS[code].message
    return {
        "error": {
            "code": code,
            "message": translate(message, "en"),
            "message_zh": translate(message, "zh-CN"),
            "details": dict(details or {}),
        }
    }


class TspError(DomainError):
    """A refusal the gateway answers with a TSP err_number (and ``details``).

    ``code`` is the err_number itself, so the error catalog above is the one mapping from
    a refusal to the wire.
    """

    status = 400
    default_code = INTERNAL

    def __init__(self, err_number: str, details: Mapping[str, Any] | None = None) -> None:
        if err_number not in ERRORS:
            raise ValueError(f"not a TSP error code: {err_number!r}")
        super().__init__(ERRORS[err_number].message, code=err_number)
        self.details: dict[str, Any] = dict(details or {})

    @property
    def spec(self) -> ErrorSpec:
        return ERRORS[self.code]

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.details)
