"""Request body validation (``10005``): each serv_type's fields, types, ranges and
enumerations, reported as paths (``card.bin``, ``notes[0].value``) in ``details.fields``.

A small declarative table rather than pydantic: TSP/1 wants exact JSON types (``1.0`` or
``true`` is not an integer, pydantic's lax mode would take both), every offending path at
once, and unknown fields ignored.

Money requests (2001, 2002) are checked for shape only. Their business limits (amount,
denominations, a payable number) make a payment ``held``, never refused, because the
cash is already in the box (PROTOCOL.md, "Money requests are always recorded"). So the
shape rules here are never looser than what ``payments.record_payments`` accepts: a body
that passes them can always be recorded (amounts up to its ``MAX_AMOUNT``, 10^11 fen,
also as the sum of the notes; an auth code up to 12 and an RRN up to 24 characters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from teleserve.gateway.frame import MAX_SERIAL, MAX_TIMESTAMP

Out = list[str]


class Spec:
    def check(self, value: Any, path: str, out: Out) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Spec):
    low: int = 1
    high: int = 64
    pattern: str | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any, path: str, out: Out) -> None:
        ok = isinstance(value, str) and self.low <= len(value) <= self.high
        # A required text of spaces only names nothing (and payments would refuse it).
        ok = ok and (self.low == 0 or not value.isspace())
        if ok and self.pattern is not None:
            ok = re.fullmatch(self.pattern, value) is not None
        if ok and self.choices:
            ok = value in self.choices
        if not ok:
            out.append(path)


@dataclass(frozen=True)
class Int(Spec):
    low: int = 0
    high: int = 2**53 - 1  # what every JSON peer can hold exactly

    def check(self, value: Any, path: str, out: Out) -> None:
        # bool is an int in Python, not in JSON.
        if type(value) is not int or not self.low <= value <= self.high:
            out.append(path)


@dataclass(frozen=True)
class Date(Spec):
    """``YYYY-MM-DD`` (``month=True``: ``YYYY-MM``), a real calendar date."""

    month: bool = False

    def check(self, value: Any, path: str, out: Out) -> None:
        pattern = r"\d{4}-\d{2}" if self.month else r"\d{4}-\d{2}-\d{2}"
        if not isinstance(value, str) or not re.fullmatch(pattern, value, re.ASCII):
            out.append(path)
            return
        try:
            date.fromisoformat(value + "-01" if self.month else value)
        except ValueError:
            out.append(path)


@dataclass(frozen=True)
class List(Spec):
    item: Spec
    low: int = 0
    high: int = 10_000

    def check(self, value: Any, path: str, out: Out) -> None:
        if not isinstance(value, list) or not self.low <= len(value) <= self.high:
            out.append(path)
            return
        for i, element in enumerate(value):
            self.item.check(element, f"{path}[{i}]", out)


@dataclass(frozen=True)
class Map(Spec):
    """An object with free keys (device names), each value of one spec."""

    value: Spec
    key: Str = Str(1, 64)
    high: int = 100

    def check(self, value: Any, path: str, out: Out) -> None:
        if not isinstance(value, dict) or len(value) > self.high:
            out.append(path)
            return
        for name, element in value.items():
            sub = f"{path}.{name}"
            before = len(out)
            self.key.check(name, sub, out)
            if len(out) == before:
                self.value.check(element, sub, out)


@dataclass(frozen=True)
class Obj(Spec):
    required: Mapping[str, Spec] = field(default_factory=dict)
    optional: Mapping[str, Spec] = field(default_factory=dict)
    # discriminator field -> {its value -> fields then required}
    variants: tuple[str, Mapping[str, Mapping[str, Spec]]] | None = None
    # exactly one of these must be present
    one_of: tuple[str, ...] = ()

    def check(self, value: Any, path: str, out: Out) -> None:
        if not isinstance(value, dict):
            out.append(path)
            return
        required = dict(self.required)
        if self.variants is not None:
            name, table = self.variants
            chosen = value.get(name)
            if isinstance(chosen, str):  # a list here would not even be hashable
                required.update(table.get(chosen, {}))
        for name, spec in required.items():
            sub = f"{path}.{name}" if path else name
            if name not in value:
                out.append(sub)
            else:
                spec.check(value[name], sub, out)
        for name, spec in self.optional.items():
            if name in value:
                spec.check(value[name], f"{path}.{name}" if path else name, out)
        if self.one_of and sum(name in value for name in self.one_of) != 1:
            out.extend(
                f"{path}.{n}" if path else n
                for n in self.one_of
                if n in value or not any(m in value for m in self.one_of)
            )


MSISDN = Str(3, 32, r"[0-9A-Za-z._@-]+")
TOKEN = Str(32, 128, r"[0-9a-f]+")
NONCE = Str(32, 32, r"[0-9a-fA-F]+")
SERIAL = Int(1, MAX_SERIAL)
MILLIS = Int(0, MAX_TIMESTAMP)
TEXT = Str(1, 64)
MAX_AMOUNT = 100_000_000_000  # payments.service.MAX_AMOUNT (the codec imports no domain)
AMOUNT = Int(0, MAX_AMOUNT)
# 100 entries x 1,000 notes x 10,000 yuan: the notes' sum stays within MAX_AMOUNT.
NOTE = Obj({"value": Int(1, 1_000_000), "count": Int(1, 1_000)})
NOTES = List(NOTE, 1, 100)
COUNTED = Obj({"value": Int(1, 1_000_000), "count": Int(0, 1_000_000)})
DEVICE_MODE = Str(choices=("sim", "hardware"))
EMPTY = Obj()


def _tokened(**fields: Spec) -> Obj:
    return Obj({"customer_token": TOKEN, **fields})


REQUESTS: dict[int, Obj] = {
    1: Obj(
        {"client_nonce": NONCE, "software_version": TEXT, "last_serial": Int(0, MAX_SERIAL)},
        {"device_mode": DEVICE_MODE},
    ),
    2: EMPTY,
    3: EMPTY,
    1001: Obj(
        {"msisdn": MSISDN, "method": Str(choices=("password", "otp", "id_card"))},
        {"customer_token": TOKEN},
        variants=(
            "method",
            {
                "password": {"secret": Str(1, 128)},
                "otp": {"secret": Str(1, 128)},
                "id_card": {
                    "id_number": Str(1, 32),
                    "id_name": Str(1, 64),
                    "reader_id": TEXT,
                    "face_match_score": Int(0, 100),
                },
            },
        ),
    ),
    1002: Obj({"msisdn": MSISDN}),
    1003: _tokened(),
    1010: _tokened(),
    1011: _tokened(month=Date(month=True)),
    1012: _tokened(month=Date(month=True), kind=Str(choices=("voice", "sms", "data"))),
    1013: _tokened(kind=Str(choices=("plan", "vas"))),
    1014: _tokened(),
    1015: Obj({"msisdn": MSISDN}),
    2001: Obj(
        {
            "msisdn": MSISDN,
            "amount": AMOUNT,
            "notes": NOTES,
            "cash_box_id": TEXT,
            "txn_time_ms": MILLIS,
        }
    ),
    2002: Obj(
        {
            "msisdn": MSISDN,
            "amount": Int(1, MAX_AMOUNT),  # the card was charged this: never zero
            # bin and last4 are exactly as long as they may be: anything longer could be
            # a card number, which must never reach the server.
            "card": Obj(
                {
                    "bin": Str(6, 8, r"[0-9]+"),
                    "last4": Str(4, 4, r"[0-9]+"),
                    "auth_code": Str(1, 12),
                    "rrn": Str(1, 24),
                    "merchant_id": Str(1, 32),
                    "acq_terminal_id": Str(1, 32),
                    "trace_no": Str(1, 32),
                    "batch_no": Str(1, 32),
                }
            ),
            "txn_time_ms": MILLIS,
        }
    ),
    2009: Obj(
        {
            "original_serial": SERIAL,
            "reason": Str(choices=("customer_cancel", "device_fault", "timeout")),
        }
    ),
    2010: Obj({"original_serial": SERIAL}),
    2011: Obj(
        {"customer_token": TOKEN, "title": Str(1, 200)},
        {"bill_id": TEXT, "original_serial": SERIAL, "tax_id": Str(1, 32)},
        one_of=("bill_id", "original_serial"),
    ),
    2012: Obj({"original_serial": SERIAL}),
    3001: _tokened(offer_id=TEXT, effective=Str(choices=("next_cycle", "immediate"))),
    3002: _tokened(offer_id=TEXT, action=Str(choices=("add", "remove"))),
    3003: _tokened(reason=Str(choices=("lost", "keep_number"))),
    3004: _tokened(),
    3005: _tokened(old_secret=Str(1, 128), new_secret=Str(1, 128)),
    3006: _tokened(reward_id=TEXT, quantity=Int(1, 10_000)),
    9001: Obj(
        {
            "software_version": TEXT,
            "uptime_s": Int(),
            "device_mode": DEVICE_MODE,
            "devices": Map(
                Obj(
                    {"state": Str(choices=("ok", "warning", "fault", "offline"))},
                    {"detail": Str(0, 1000)},
                )
            ),
            "cash_box": Obj(
                {"box_id": TEXT, "notes": List(COUNTED), "capacity_notes": Int(0, 10**6)}
            ),
            "printer_paper": Str(choices=("ok", "low", "out")),
        }
    ),
    9002: Obj(
        {
            "alarm_code": TEXT,
            "severity": Str(choices=("critical", "major", "minor", "warning")),
            "device": TEXT,
            "message": Str(1, 1000),
            "raised_ms": MILLIS,
        }
    ),
    9003: Obj(
        {
            "box_id": TEXT,
            "counted": List(COUNTED),
            "operator_id": TEXT,
            "collected_ms": MILLIS,
            "new_box_id": TEXT,
        }
    ),
    9004: Obj({"config_version": Int()}),
    9005: Obj(
        {"command_id": TEXT, "result": Str(choices=("done", "failed"))},
        {"detail": Str(0, 1000)},
    ),
    9006: Obj(
        {
            "business_date": Date(),
            "entries": List(
                Obj(
                    {
                        "serial": SERIAL,
                        "serv_type": Int(1, 9999),
                        "amount": AMOUNT,
                        "status": Str(1, 32),
                    }
                ),
                high=100_000,
            ),
        }
    ),
}


def validate_request(serv_type: int, body: Mapping[str, Any]) -> list[str]:
    """The paths of the fields that break ``serv_type``'s request rules (empty: valid)."""
    spec = REQUESTS.get(serv_type)
    if spec is None:
        raise ValueError(f"no request rules for serv_type {serv_type}")
    out: Out = []
    spec.check(dict(body), "", out)
    return out
