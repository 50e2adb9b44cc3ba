"""The serv_type catalog: every serv_type PROTOCOL.md names, its channel and the flags
the order of checks needs (state-changing, refused when out of service)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Channel(Enum):
    BUSINESS = "business"
    MANAGEMENT = "management"


@dataclass(frozen=True, slots=True)
class ServType:
    code: int
    name: str
    channel: Channel
    # Recorded under (terminal_id, serial) and answered again on a resend.
    state_changing: bool = False
    # Refused with 10009 while the terminal is out of service.
    refused_out_of_service: bool = False


SIGN_ON = 1
SIGN_OFF = 2
KEEPALIVE = 3
USAGE_DETAIL = 1012
CASH_PAYMENT = 2001
CARD_PAYMENT = 2002
REVERSAL = 2009

_B = Channel.BUSINESS
_M = Channel.MANAGEMENT

SERV_TYPES: dict[int, ServType] = {
    s.code: s
    for s in (
        ServType(1, "SIGN_ON", _B),
        ServType(2, "SIGN_OFF", _B),
        ServType(3, "KEEPALIVE", _B),
        ServType(1001, "CUSTOMER_LOGIN", _B, refused_out_of_service=True),
        ServType(1002, "OTP_SEND", _B, state_changing=True, refused_out_of_service=True),
        ServType(1003, "CUSTOMER_LOGOUT", _B, state_changing=True),
        ServType(1010, "ACCOUNT_SUMMARY", _B, refused_out_of_service=True),
        ServType(1011, "BILL_QUERY", _B, refused_out_of_service=True),
        ServType(1012, "USAGE_DETAIL", _B, refused_out_of_service=True),
        ServType(1013, "OFFER_LIST", _B, refused_out_of_service=True),
        ServType(1014, "POINTS_QUERY", _B, refused_out_of_service=True),
        ServType(1015, "MSISDN_CHECK", _B, refused_out_of_service=True),
        ServType(2001, "CASH_PAYMENT", _B, state_changing=True),
        ServType(2002, "CARD_PAYMENT", _B, state_changing=True),
        ServType(2009, "REVERSAL", _B, state_changing=True),
        ServType(2010, "RECEIPT", _B),
        ServType(2011, "INVOICE_ISSUE", _B, state_changing=True, refused_out_of_service=True),
        ServType(2012, "TXN_STATUS", _B),
        ServType(3001, "PLAN_CHANGE", _B, state_changing=True, refused_out_of_service=True),
        ServType(3002, "VAS_CHANGE", _B, state_changing=True, refused_out_of_service=True),
        ServType(3003, "SUSPEND", _B, state_changing=True, refused_out_of_service=True),
        ServType(3004, "RESUME", _B, state_changing=True, refused_out_of_service=True),
        ServType(3005, "PASSWORD_CHANGE", _B, state_changing=True, refused_out_of_service=True),
        ServType(3006, "POINTS_REDEEM", _B, state_changing=True, refused_out_of_service=True),
        ServType(9001, "STATUS_REPORT", _M),
        ServType(9002, "ALARM", _M, state_changing=True),
        ServType(9003, "CASH_COLLECTION", _M, state_changing=True),
        ServType(9004, "CONFIG_PULL", _M),
        ServType(9005, "COMMAND_ACK", _M, state_changing=True),
        ServType(9006, "JOURNAL_UPLOAD", _M),
    )
}

# Money requests: their records are kept for good (PROTOCOL.md, "Serial numbers").
MONEY_SERV_TYPES = frozenset({2001, 2002, 2009})


def lookup(code: int) -> ServType | None:
    return SERV_TYPES.get(code)
