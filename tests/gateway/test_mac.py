"""MAC keys, sign-on crypto, and the error catalog."""

from __future__ import annotations

import pytest

from teleserve.core.errors import DomainError
from teleserve.core.i18n import translate
from teleserve.gateway import errors
from teleserve.gateway.body import encode_body
from teleserve.gateway.catalog import MONEY_SERV_TYPES, SERV_TYPES, Channel
from teleserve.gateway.errors import ERRORS, ZERO_MAC_CODES, TspError, error_body
from teleserve.gateway.frame import Frame, decode_frame
from teleserve.gateway.mac import (
    compute_mac,
    derive_session_key,
    new_server_nonce,
    new_session_id,
    parse_nonce,
    verify_mac,
)

from .vectors import MASTER_KEY, SIGN_ON_REQUEST


def test_zero_mac_codes_are_exactly_the_unauthenticated_ones() -> None:
    assert {"10001", "10002", "10007", "10008"} == ZERO_MAC_CODES
    assert {c for c, e in ERRORS.items() if e.closes} == {"10001", "10008"}


def test_error_catalog_matches_protocol_md() -> None:
    assert set(ERRORS) == {
        *(f"1000{i}" for i in range(1, 10)),
        *(f"200{i:02d}" for i in range(1, 13)),
        "30001",
        "30002",
        "90001",
        "90002",
    }


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_error_has_both_languages(code: str) -> None:
    body = error_body(code, {"retry_after_s": 60})
    error = body["error"]
    assert list(error) == ["code", "message", "message_zh", "details"]
    assert error["code"] == code
    assert error["message"] == ERRORS[code].message
    assert error["message_zh"] != error["message"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message_zh"])
    assert error["details"] == {"retry_after_s": 60}
    assert encode_body(body)  # serialisable


def test_tsp_error_is_a_domain_error() -> None:
    exc = TspError(errors.SERIAL_CONFLICT, {"last_serial": 41})
    assert isinstance(exc, DomainError)
    assert exc.code == "10003"
    assert exc.spec.zero_mac is False
    assert exc.body()["error"]["details"] == {"last_serial": 41}
    assert (
        exc.render("zh-CN") == translate(exc.message, "zh-CN") == "该流水号已记录，且报文内容不同"
    )
    with pytest.raises(ValueError):
        TspError("10010")


def test_serv_type_catalog() -> None:
    assert SERV_TYPES[1].name == "SIGN_ON"
    assert {s for s, t in SERV_TYPES.items() if t.channel is Channel.MANAGEMENT} == set(
        range(9001, 9007)
    )
    state_changing = {s for s, t in SERV_TYPES.items() if t.state_changing}
    assert state_changing == {
        1002,
        1003,
        2001,
        2002,
        2009,
        2011,
        3001,
        3002,
        3003,
        3004,
        3005,
        3006,
        9002,
        9003,
        9005,
    }
    refused = {s for s, t in SERV_TYPES.items() if t.refused_out_of_service}
    assert refused == {1001, 1002, *range(1010, 1016), 2011, *range(3001, 3007)}
    assert state_changing >= MONEY_SERV_TYPES


def test_verify_mac_tries_every_key_and_ignores_bad_ones() -> None:
    frame = decode_frame(SIGN_ON_REQUEST.wire)
    assert isinstance(frame, Frame)
    assert verify_mac(frame, []) is None
    assert verify_mac(frame, [b"short", MASTER_KEY]) == MASTER_KEY
    assert verify_mac(frame, [bytes(32), bytes(range(1, 33))]) is None


def test_zero_mac_and_key_size() -> None:
    assert compute_mac(None, b"anything") == bytes(32)
    with pytest.raises(ValueError):
        compute_mac(b"k" * 16, b"x")
    with pytest.raises(ValueError):
        derive_session_key(MASTER_KEY, b"1" * 15, b"2" * 16)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("00112233445566778899aabbccddeeff", True),
        ("00112233445566778899AABBCCDDEEFF", True),
        ("00112233445566778899aabbccddee", False),
        ("00 12233445566778899aabbccddeeff", False),  # fromhex would skip the space
        ("00112233445566778899aabbccddeefg", False),
        (1234, False),
        (None, False),
    ],
)
def test_parse_nonce(text: object, ok: bool) -> None:
    assert (parse_nonce(text) is not None) is ok


def test_fresh_nonces_and_session_ids() -> None:
    assert len(new_server_nonce()) == 16
    assert new_server_nonce() != new_server_nonce()
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 8 and i != "00000000" and i == i.lower() for i in ids)
