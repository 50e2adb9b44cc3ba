"""Request body validation (10005): exact JSON types, ranges, enumerations, and every
offending field named by its path."""

from __future__ import annotations

from typing import Any

import pytest

from teleserve.gateway.catalog import SERV_TYPES
from teleserve.gateway.fields import REQUESTS, validate_request

TOKEN = "0123456789abcdef" * 2
CARD = {
    "bin": "622588",
    "last4": "1234",
    "auth_code": "A1B2C3",
    "rrn": "123456789012",
    "merchant_id": "898310048161234",
    "acq_terminal_id": "10000001",
    "trace_no": "000123",
    "batch_no": "000001",
}
VALID: dict[int, dict[str, Any]] = {
    1: {
        "client_nonce": "00112233445566778899AABBCCDDEEFF",
        "software_version": "1.0.0",
        "last_serial": 0,
    },
    2: {},
    3: {},
    1001: {"msisdn": "13800138000", "method": "password", "secret": "123456"},
    1002: {"msisdn": "13800138000"},
    1003: {"customer_token": TOKEN},
    1010: {"customer_token": TOKEN},
    1011: {"customer_token": TOKEN, "month": "2026-10"},
    1012: {"customer_token": TOKEN, "month": "2026-10", "kind": "data"},
    1013: {"customer_token": TOKEN, "kind": "vas"},
    1014: {"customer_token": TOKEN},
    1015: {"msisdn": "02088889999"},
    2001: {
        "msisdn": "13800138000",
        "amount": 15000,
        "notes": [{"value": 10000, "count": 1}, {"value": 5000, "count": 1}],
        "cash_box_id": "BOX-0001",
        "txn_time_ms": 1764115200000,
    },
    2002: {"msisdn": "adsl.user@isp", "amount": 100, "card": CARD, "txn_time_ms": 1},
    2009: {"original_serial": 41, "reason": "device_fault"},
    2010: {"original_serial": 41},
    2011: {"customer_token": TOKEN, "bill_id": "B1", "title": "个人"},
    2012: {"original_serial": 999999999999},
    3001: {"customer_token": TOKEN, "offer_id": "P1", "effective": "next_cycle"},
    3002: {"customer_token": TOKEN, "offer_id": "V1", "action": "remove"},
    3003: {"customer_token": TOKEN, "reason": "keep_number"},
    3004: {"customer_token": TOKEN},
    3005: {"customer_token": TOKEN, "old_secret": "111111", "new_secret": "222222"},
    3006: {"customer_token": TOKEN, "reward_id": "R1", "quantity": 2},
    9001: {
        "software_version": "1.0.0",
        "uptime_s": 3600,
        "device_mode": "hardware",
        "devices": {
            "cash_acceptor": {"state": "ok"},
            "printer": {"state": "warning", "detail": "paper low"},
        },
        "cash_box": {
            "box_id": "BOX-0001",
            "notes": [{"value": 10000, "count": 0}],
            "capacity_notes": 2000,
        },
        "printer_paper": "low",
    },
    9002: {
        "alarm_code": "CASH_JAM",
        "severity": "major",
        "device": "cash_acceptor",
        "message": "jam",
        "raised_ms": 1,
    },
    9003: {
        "box_id": "BOX-0001",
        "counted": [{"value": 10000, "count": 12}],
        "operator_id": "op7",
        "collected_ms": 1,
        "new_box_id": "BOX-0002",
    },
    9004: {"config_version": 0},
    9005: {"command_id": "C1", "result": "failed", "detail": ""},
    9006: {
        "business_date": "2026-11-25",
        "entries": [{"serial": 5, "serv_type": 2001, "amount": 100, "status": "completed"}],
    },
}


def test_every_serv_type_has_request_rules() -> None:
    assert set(REQUESTS) == set(SERV_TYPES) == set(VALID)


@pytest.mark.parametrize("serv_type", sorted(VALID))
def test_valid_bodies_pass_and_unknown_fields_are_ignored(serv_type: int) -> None:
    assert validate_request(serv_type, VALID[serv_type]) == []
    assert validate_request(serv_type, {**VALID[serv_type], "zz_future": [1, {"x": None}]}) == []


@pytest.mark.parametrize("serv_type", sorted(s for s in VALID if VALID[s]))
def test_missing_fields_are_all_named(serv_type: int) -> None:
    bad = validate_request(serv_type, {})
    assert bad
    assert set(bad) <= set(VALID[serv_type]) | {"secret", "bill_id", "original_serial"}


@pytest.mark.parametrize(
    ("serv_type", "changes", "paths"),
    [
        (2001, {"amount": 100.0}, ["amount"]),  # a float amount
        (2001, {"amount": True}, ["amount"]),  # a boolean is no integer in JSON
        (2001, {"amount": "100"}, ["amount"]),
        (2001, {"amount": -1}, ["amount"]),
        (2001, {"notes": []}, ["notes"]),
        (
            2001,
            {"notes": [{"value": 100, "count": 0}, {"value": "x", "count": 1}]},
            ["notes[0].count", "notes[1].value"],
        ),
        (2001, {"notes": {"value": 100}}, ["notes"]),
        (2001, {"notes": [7]}, ["notes[0]"]),
        (2001, {"amount": 100_000_000_001}, ["amount"]),
        (2001, {"notes": [{"value": 1_000_001, "count": 1}]}, ["notes[0].value"]),
        (2001, {"notes": [{"value": 100, "count": 1_001}]}, ["notes[0].count"]),
        (2001, {"notes": [{"value": 100, "count": 1}] * 101}, ["notes"]),
        (2001, {"cash_box_id": "   "}, ["cash_box_id"]),
        (2002, {"amount": 0}, ["amount"]),
        (2002, {"card": {**CARD, "rrn": "1" * 25}}, ["card.rrn"]),
        (2001, {"msisdn": "13 800"}, ["msisdn"]),
        (2001, {"msisdn": "13"}, ["msisdn"]),
        (2001, {"txn_time_ms": 10**13}, ["txn_time_ms"]),
        (2002, {"card": {**CARD, "bin": "6225880000000000"}}, ["card.bin"]),  # a PAN
        (2002, {"card": {**CARD, "last4": "12345"}}, ["card.last4"]),
        (2002, {"card": {**CARD, "pan": "6225880000001234"}}, []),  # unknown: ignored
        (2002, {"card": {k: v for k, v in CARD.items() if k != "rrn"}}, ["card.rrn"]),
        (2009, {"reason": "changed_mind"}, ["reason"]),
        (2009, {"original_serial": 0}, ["original_serial"]),
        (2012, {"original_serial": 10**12}, ["original_serial"]),
        (1, {"client_nonce": "0011"}, ["client_nonce"]),
        (1, {"client_nonce": " " + "0" * 31}, ["client_nonce"]),
        (1, {"device_mode": "emulator"}, ["device_mode"]),
        (1, {"last_serial": -1}, ["last_serial"]),
        (1001, {"method": "id_card"}, ["id_number", "id_name", "reader_id", "face_match_score"]),
        (1001, {"method": "fingerprint"}, ["method"]),
        (1001, {"method": ["password"]}, ["method"]),
        (1001, {"secret": 123456}, ["secret"]),
        (1001, {"customer_token": "XYZ"}, ["customer_token"]),
        (1011, {"month": "2026-13"}, ["month"]),
        (1011, {"month": "2026-1"}, ["month"]),
        (1012, {"kind": "mms"}, ["kind"]),
        (2011, {"original_serial": 3}, ["bill_id", "original_serial"]),  # both given
        (3006, {"quantity": 0}, ["quantity"]),
        (9001, {"devices": {"printer": {"state": "broken"}}}, ["devices.printer.state"]),
        (9001, {"devices": []}, ["devices"]),
        (
            9001,
            {"cash_box": {"box_id": "B", "notes": [{"value": 1, "count": -1}]}},
            ["cash_box.notes[0].count", "cash_box.capacity_notes"],
        ),
        (9004, {"config_version": "v3"}, ["config_version"]),
        (9006, {"business_date": "2026-02-30"}, ["business_date"]),
        (
            9006,
            {"entries": [{"serial": 1, "serv_type": 2001, "amount": 1.5, "status": "held"}]},
            ["entries[0].amount"],
        ),
    ],
)
def test_field_errors_name_their_paths(
    serv_type: int, changes: dict[str, Any], paths: list[str]
) -> None:
    assert validate_request(serv_type, {**VALID[serv_type], **changes}) == paths


def test_id_card_login_needs_its_fields_and_a_score_in_range() -> None:
    body = {
        "msisdn": "13800138000",
        "method": "id_card",
        "id_number": "11010119900307123X",
        "id_name": "张三",
        "reader_id": "R1",
        "face_match_score": 80,
    }
    assert validate_request(1001, body) == []
    assert validate_request(1001, {**body, "face_match_score": 101}) == ["face_match_score"]


def test_invoice_needs_one_reference() -> None:
    body = {"customer_token": TOKEN, "title": "公司"}
    assert validate_request(2011, body) == ["bill_id", "original_serial"]
    assert validate_request(2011, {**body, "original_serial": 9}) == []


def test_unknown_serv_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        validate_request(4321, {})


def test_money_shape_rules_never_looser_than_the_payments_write_path() -> None:
    # A body that passes 10005 must be recordable: a refused money request is lost money.
    from teleserve.gateway.fields import MAX_AMOUNT, NOTE, NOTES, Int
    from teleserve.payments.service import MAX_AMOUNT as PAYMENTS_MAX_AMOUNT

    assert MAX_AMOUNT == PAYMENTS_MAX_AMOUNT
    assert REQUESTS[2001].required["notes"] is NOTES
    value, count = NOTE.required["value"], NOTE.required["count"]
    assert isinstance(value, Int) and isinstance(count, Int)
    assert NOTES.high * count.high * value.high <= MAX_AMOUNT  # the notes' largest sum
