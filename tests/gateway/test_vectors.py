"""Every PROTOCOL.md test vector, byte for byte, in both directions: our encoder
produces exactly those bytes, our decoder reads them back and authenticates them."""

from __future__ import annotations

import pytest

from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.catalog import Channel
from teleserve.gateway.checks import (
    Accepted,
    Refusal,
    SessionView,
    TerminalState,
    TerminalView,
    check_request,
)
from teleserve.gateway.frame import Echo, Frame, Header, decode_frame, encode_header
from teleserve.gateway.mac import compute_mac, derive_session_key, parse_nonce, verify_mac
from teleserve.gateway.reply import answer, signed_frame
from teleserve.gateway.stream import FrameDecoder

from .vectors import (
    ALL,
    CLIENT_NONCE,
    ERROR_RESPONSE,
    KEEPALIVE_REQUEST,
    MASTER_KEY,
    SERVER_NONCE,
    SESSION_ID,
    SESSION_KEY,
    SIGN_ON_REQUEST,
    SIGN_ON_RESPONSE,
    TERMINAL,
    UTF8_RESPONSE,
    Vector,
)

ECHO_BY_NAME = {
    "sign_on_request": Header(TERMINAL, 1, 1, "Q", True, "00000", 1764115200000, "00000000"),
    "sign_on_response": Header(TERMINAL, 1, 1, "R", True, "00000", 1764115200050, SESSION_ID),
    "keepalive_request": Header(TERMINAL, 2, 3, "Q", True, "00000", 1764115201000, SESSION_ID),
    "error_response": Header(TERMINAL, 3, 3, "R", True, "10006", 1764115205000, SESSION_ID),
    "utf8_response": Header(TERMINAL, 4, 1015, "R", True, "00000", 1764115206000, SESSION_ID),
}
TERMINALS = {TERMINAL: TerminalView(TERMINAL, TerminalState.IN_SERVICE, (MASTER_KEY,))}
SESSION = SessionView(TERMINAL, SESSION_ID, SESSION_KEY, 1764115200050 + 86_400_000)


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_header_encodes_to_the_vector(vector: Vector) -> None:
    assert encode_header(ECHO_BY_NAME[vector.name]) == vector.header


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_mac_and_length(vector: Vector) -> None:
    assert compute_mac(vector.key, vector.header + vector.body).hex() == vector.mac
    if vector.length is not None:
        assert int.from_bytes(vector.wire[:4], "big") == vector.length == len(vector.wire) - 4


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_encoder_produces_the_vector_bytes(vector: Vector) -> None:
    body = parse_body(vector.body)
    assert isinstance(body, dict)
    # Compact JSON in the order given reproduces the vector's body bytes exactly.
    assert encode_body(body) == vector.body
    assert signed_frame(ECHO_BY_NAME[vector.name], vector.body, vector.key) == vector.wire


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.name)
def test_decoder_reads_the_vector(vector: Vector) -> None:
    frame = decode_frame(vector.wire)
    assert isinstance(frame, Frame)
    assert frame.header == ECHO_BY_NAME[vector.name]
    assert frame.body == vector.body
    assert verify_mac(frame, [bytes(32), vector.key]) == vector.key
    assert verify_mac(frame, [bytes(32)]) is None


def test_all_vectors_in_one_stream_byte_by_byte() -> None:
    decoder = FrameDecoder()
    frames = []
    for byte in b"".join(v.wire for v in ALL):
        decoder.feed(bytes([byte]))
        frames.extend(decoder.drain())
    assert [f.header for f in frames if isinstance(f, Frame)] == [ECHO_BY_NAME[v.name] for v in ALL]
    assert decoder.finish() is None


def test_session_key_derivation() -> None:
    client, server = parse_nonce(CLIENT_NONCE), parse_nonce(SERVER_NONCE)
    assert client is not None and server is not None
    assert derive_session_key(MASTER_KEY, client, server) == SESSION_KEY


def test_the_server_accepts_the_sign_on_and_answers_the_vector() -> None:
    outcome = check_request(
        decode_frame(SIGN_ON_REQUEST.wire),
        channel=Channel.BUSINESS,
        lookup=TERMINALS.get,
        session=None,
        now_ms=1764115200000,
    )
    assert isinstance(outcome, Accepted)
    assert outcome.key == MASTER_KEY
    assert outcome.body["client_nonce"] == CLIENT_NONCE
    reply_body = {
        "session_id": SESSION_ID,
        "server_nonce": SERVER_NONCE,
        "keepalive_s": 30,
        "server_time_ms": 1764115200050,
        "last_serial": 0,
    }
    wire = answer(
        outcome.frame.echo,
        reply_body,
        key=outcome.key,
        session_id=SESSION_ID,
        now_ms=1764115200050,
    )
    assert wire == SIGN_ON_RESPONSE.wire


def test_the_server_accepts_the_keepalive_with_the_session_key() -> None:
    outcome = check_request(
        decode_frame(KEEPALIVE_REQUEST.wire),
        channel=Channel.BUSINESS,
        lookup=TERMINALS.get,
        session=SESSION,
        now_ms=1764115201000,
    )
    assert isinstance(outcome, Accepted)
    assert outcome.key == SESSION_KEY
    assert outcome.session_id == SESSION_ID


def test_clock_skew_refusal_is_the_error_vector() -> None:
    # A KEEPALIVE with serial 3 stamped 301 s before the server's clock.
    header = Header(TERMINAL, 3, 3, "Q", True, "00000", 1764115205000 - 301_000, SESSION_ID)
    wire = signed_frame(header, b"{}", SESSION_KEY)
    outcome = check_request(
        decode_frame(wire),
        channel=Channel.BUSINESS,
        lookup=TERMINALS.get,
        session=SESSION,
        now_ms=1764115205000,
    )
    assert isinstance(outcome, Refusal)
    assert outcome.code == "10006"
    assert not outcome.closes
    assert outcome.reply(1764115205000) == ERROR_RESPONSE.wire


def test_utf8_answer_is_the_vector() -> None:
    wire = answer(
        Echo(TERMINAL, 4, 1015),
        {"customer_name": "张*", "payable": True},
        key=SESSION_KEY,
        session_id=SESSION_ID,
        now_ms=1764115206000,
    )
    assert wire == UTF8_RESPONSE.wire
