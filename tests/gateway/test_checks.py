"""The order of checks: each failure answered with its code, key, session and echo, and
the first failure winning when several apply."""

from __future__ import annotations

from typing import Any

import pytest

from teleserve.gateway.body import parse_body
from teleserve.gateway.catalog import Channel
from teleserve.gateway.checks import (
    TIME_WINDOW_MS,
    Accepted,
    CloseSilently,
    Outcome,
    Refusal,
    SessionView,
    check_fields,
    check_in_service,
    check_request,
)
from teleserve.gateway.frame import ZERO_MAC, BadLength, Echo, Frame, Truncated, decode_frame
from teleserve.gateway.mac import verify_mac

from .helpers import NOW, OLD_KEY, SESSION, SIGN_ON_BODY, TERMINALS, request
from .vectors import MASTER_KEY, SESSION_ID, SESSION_KEY, TERMINAL

B, M = Channel.BUSINESS, Channel.MANAGEMENT


def check(
    wire: bytes,
    channel: Channel = B,
    session: SessionView | None = SESSION,
    now_ms: int = NOW,
    **kwargs: Any,
) -> Outcome:
    return check_request(
        decode_frame(wire),
        channel=channel,
        lookup=TERMINALS.get,
        session=session,
        now_ms=now_ms,
        **kwargs,
    )


def refused(outcome: Outcome, code: str) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    assert outcome.code == code, outcome
    return outcome


def reply_of(refusal: Refusal) -> Frame:
    frame = decode_frame(refusal.reply(NOW))
    assert isinstance(frame, Frame)
    assert frame.header.direction == "R"
    assert frame.header.err_number == refusal.code
    return frame


def assert_zero_mac_reply(refusal: Refusal, echo: Echo) -> dict[str, Any]:
    frame = reply_of(refusal)
    assert frame.mac == ZERO_MAC
    assert frame.header.session_id == "00000000"
    assert frame.echo == Echo(echo.terminal_id or "", echo.serial or 0, echo.serv_type or 0)
    body = parse_body(frame.body)
    assert isinstance(body, dict)
    assert body["error"]["code"] == refusal.code
    return body


def test_bad_length_and_truncation_close_without_answer() -> None:
    outcome = check_request(BadLength(5), channel=B, lookup=TERMINALS.get, session=None, now_ms=NOW)
    assert outcome == CloseSilently(BadLength(5))
    outcome = check_request(Truncated(9), channel=B, lookup=TERMINALS.get, session=None, now_ms=NOW)
    assert isinstance(outcome, CloseSilently)


def test_malformed_header_is_10001_with_zero_mac_and_closes() -> None:
    wire = bytearray(request(3))
    wire[4 + 20 : 4 + 32] = b"00000000000x"  # serial
    r = refused(check(bytes(wire)), "10001")
    assert r.closes
    assert r.details == {"field": "serial_number"}
    body = assert_zero_mac_reply(r, Echo(TERMINAL, None, 3))
    assert body["error"]["message"] == "malformed frame"
    assert body["error"]["message_zh"] == "报文格式错误"
    assert body["error"]["details"] == {"field": "serial_number"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"direction": "R"}, "direction"),
        ({"last": False}, "end_flag"),
        ({"err_number": "10006"}, "err_number"),
    ],
)
def test_request_only_header_rules(kwargs: dict[str, Any], field: str) -> None:
    r = refused(check(request(3, **kwargs)), "10001")
    assert r.details == {"field": field}
    assert_zero_mac_reply(r, Echo(TERMINAL, 7, 3))


def test_session_id_must_be_zero_on_sign_on_and_management() -> None:
    r = refused(check(request(1, SIGN_ON_BODY, session_id=SESSION_ID)), "10001")
    assert r.details == {"field": "session_id"}
    r = refused(check(request(9004, session_id="0000000a"), channel=M, session=None), "10001")
    assert r.details == {"field": "session_id"}


@pytest.mark.parametrize("terminal", ["NOBODY", "GONE-1"])
def test_unknown_or_decommissioned_terminal_is_10008(terminal: str) -> None:
    # Before the session and the MAC: the frame carries a wrong MAC too.
    r = refused(check(request(3, terminal=terminal, key=bytes(32))), "10008")
    assert r.closes
    body = assert_zero_mac_reply(r, Echo(terminal, 7, 3))
    assert body["error"]["message_zh"] == "终端未登记或已注销"


@pytest.mark.parametrize(
    "session",
    [
        None,
        SessionView("ROTATING", SESSION_ID, SESSION_KEY, NOW + 1),  # another terminal's
        SessionView(TERMINAL, "0badf00d", SESSION_KEY, NOW + 1),  # another session id
        SessionView(TERMINAL, SESSION_ID, SESSION_KEY, NOW),  # expired (24 h are up)
    ],
)
def test_no_valid_session_is_10007_and_keeps_the_connection(session: SessionView | None) -> None:
    r = refused(check(request(3), session=session), "10007")
    assert not r.closes
    assert_zero_mac_reply(r, Echo(TERMINAL, 7, 3))


def test_session_check_comes_before_the_mac() -> None:
    refused(check(request(3, key=bytes(32)), session=None), "10007")


def test_session_id_zero_on_a_business_request_is_no_session() -> None:
    refused(check(request(3, session_id="00000000")), "10007")


def test_bad_mac_is_10002_with_zero_mac_and_keeps_the_connection() -> None:
    r = refused(check(request(3, key=MASTER_KEY)), "10002")  # master key, not session key
    assert not r.closes
    assert_zero_mac_reply(r, Echo(TERMINAL, 7, 3))
    refused(check(request(1, SIGN_ON_BODY, key=SESSION_KEY)), "10002")
    refused(check(request(9004, {"config_version": 1}, key=SESSION_KEY), M, None), "10002")


@pytest.mark.parametrize(
    "position",
    [
        4 + 55,  # the header (the timestamp's last digit: still well-formed)
        4 + 64,  # the body's first byte
        4 + 70,  # inside the body
        -1,  # the MAC
    ],
)
def test_tampered_frames_fail_the_mac(position: int) -> None:
    wire = bytearray(request(2009, {"original_serial": 3, "reason": "timeout"}))
    wire[position] = wire[position] ^ 0x01 if position != 4 + 55 else ord("1")
    refused(check(bytes(wire)), "10002")


def test_rotation_accepts_either_master_key_and_answers_with_the_one_used() -> None:
    for key in (MASTER_KEY, OLD_KEY):
        outcome = check(request(1, SIGN_ON_BODY, terminal="ROTATING", key=key), session=None)
        assert isinstance(outcome, Accepted)
        assert outcome.key == key
        skewed = request(1, SIGN_ON_BODY, terminal="ROTATING", key=key, timestamp_ms=0)
        r = refused(check(skewed, session=None), "10006")
        assert verify_mac(reply_of(r), [key]) == key


def test_body_not_a_json_object_is_10001_after_the_mac() -> None:
    r = refused(check(request(3, b"[]")), "10001")
    assert r.details == {"field": "body", "reason": "not_object"}
    assert_zero_mac_reply(r, Echo(TERMINAL, 7, 3))
    refused(check(request(3, b'{"a":1,"a":2}')), "10001")
    refused(check(request(3, b'{"a":NaN}')), "10001")
    refused(check(request(3, b"{\xff}")), "10001")
    # With a wrong MAC too, the MAC is what fails first.
    refused(check(request(3, b"[]", key=bytes(32))), "10002")


@pytest.mark.parametrize("skew", [-TIME_WINDOW_MS, TIME_WINDOW_MS, 0, 1, -1])
def test_time_window_edges_accepted(skew: int) -> None:
    assert isinstance(check(request(3, timestamp_ms=NOW + skew)), Accepted)


@pytest.mark.parametrize("skew", [-TIME_WINDOW_MS - 1, TIME_WINDOW_MS + 1, -NOW])
def test_time_window_exceeded_is_10006_with_server_time(skew: int) -> None:
    r = refused(check(request(3, timestamp_ms=NOW + skew)), "10006")
    assert r.details == {"server_time_ms": NOW}
    frame = reply_of(r)
    assert verify_mac(frame, [SESSION_KEY]) == SESSION_KEY
    assert frame.header.session_id == SESSION_ID
    body = parse_body(frame.body)
    assert isinstance(body, dict)
    assert body["error"]["details"] == {"server_time_ms": NOW}


def test_time_window_on_sign_on_and_management_uses_the_master_key() -> None:
    r = refused(check(request(1, SIGN_ON_BODY, timestamp_ms=NOW + 400_000), session=None), "10006")
    frame = reply_of(r)
    assert verify_mac(frame, [MASTER_KEY]) == MASTER_KEY
    assert frame.header.session_id == "00000000"
    r = refused(check(request(9004, {"config_version": 1}, timestamp_ms=1), M, None), "10006")
    assert verify_mac(reply_of(r), [MASTER_KEY]) == MASTER_KEY


def test_time_window_comes_before_serv_type() -> None:
    refused(check(request(4321, timestamp_ms=1)), "10006")


def test_unknown_and_wrong_channel_serv_types_are_10004_with_the_channel_key() -> None:
    r = refused(check(request(4321)), "10004")
    assert verify_mac(reply_of(r), [SESSION_KEY]) == SESSION_KEY
    # A 9xxx on the business port (session key) ...
    r = refused(
        check(request(9004, {"config_version": 1}, key=SESSION_KEY, session_id=SESSION_ID)), "10004"
    )
    assert verify_mac(reply_of(r), [SESSION_KEY]) == SESSION_KEY
    # ... a business serv_type on the management port (master key).
    r = refused(
        check(
            request(2012, {"original_serial": 1}, key=MASTER_KEY, session_id="00000000"), M, None
        ),
        "10004",
    )
    assert verify_mac(reply_of(r), [MASTER_KEY]) == MASTER_KEY
    assert not r.closes


def test_serv_types_not_served_yet_are_10004() -> None:
    wire = request(1011, {"customer_token": "a" * 32, "month": "2026-10"})
    refused(check(wire, served={1, 2, 3, 2012}), "10004")
    assert isinstance(check(wire), Accepted)


def test_accepted_request_carries_what_the_handler_needs() -> None:
    outcome = check(request(2012, {"original_serial": 5, "extra": [1]}))
    assert isinstance(outcome, Accepted)
    assert outcome.body == {"original_serial": 5, "extra": [1]}
    assert outcome.serv_type.name == "TXN_STATUS"
    assert (outcome.key, outcome.session_id) == (SESSION_KEY, SESSION_ID)
    assert outcome.channel is B
    assert check_in_service(outcome) is None
    assert check_fields(outcome) is None


def test_management_request_accepted_with_master_key() -> None:
    outcome = check(request(9004, {"config_version": 3}), M, None)
    assert isinstance(outcome, Accepted)
    assert (outcome.key, outcome.session_id) == (MASTER_KEY, "00000000")


def _oos(serv_type: int, body: dict[str, Any], channel: Channel = B) -> Accepted:
    session = SessionView("OOS-1", SESSION_ID, SESSION_KEY, NOW + 1000)
    outcome = check(request(serv_type, body, terminal="OOS-1"), channel, session)
    assert isinstance(outcome, Accepted), outcome
    return outcome


@pytest.mark.parametrize(
    "serv_type", [1001, 1002, 1010, 1011, 1012, 1013, 1014, 1015, 2011, 3001, 3006]
)
def test_out_of_service_refuses_customer_functions(serv_type: int) -> None:
    r = check_in_service(_oos(serv_type, {}))
    assert r is not None and r.code == "10009"
    frame = reply_of(r)
    assert verify_mac(frame, [SESSION_KEY]) == SESSION_KEY


@pytest.mark.parametrize("serv_type", [1, 2, 3, 1003, 2001, 2002, 2009, 2010, 2012])
def test_out_of_service_still_takes_money_and_sign_on(serv_type: int) -> None:
    body = SIGN_ON_BODY if serv_type == 1 else {}
    assert check_in_service(_oos(serv_type, body)) is None


def test_out_of_service_never_refuses_the_management_channel() -> None:
    outcome = check(request(9004, {"config_version": 1}, terminal="OOS-1"), M, None)
    assert isinstance(outcome, Accepted)
    assert check_in_service(outcome) is None


def test_fields_refusal_lists_paths() -> None:
    outcome = check(
        request(2001, {"msisdn": "13800138000", "amount": 1.0, "notes": [{"value": 100}]})
    )
    assert isinstance(outcome, Accepted)
    r = check_fields(outcome)
    assert r is not None and r.code == "10005"
    assert r.details == {"fields": ["amount", "notes[0].count", "cash_box_id", "txn_time_ms"]}
    frame = reply_of(r)
    assert verify_mac(frame, [SESSION_KEY]) == SESSION_KEY
    body = parse_body(frame.body)
    assert isinstance(body, dict)
    assert body["error"]["message"] == "body fails validation"
    assert body["error"]["details"]["fields"] == r.details["fields"]
