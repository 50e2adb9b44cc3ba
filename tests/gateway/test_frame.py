"""Frame and header format: every field's rule, the length range, the echo of what was
well-formed, and the encoder refusing what it cannot spell."""

from __future__ import annotations

import pytest

from teleserve.gateway.frame import (
    MAX_LENGTH,
    MIN_LENGTH,
    BadLength,
    Echo,
    Frame,
    Header,
    Malformed,
    Truncated,
    decode_frame,
    encode_frame,
    encode_header,
    parse_header,
)

from .vectors import KEEPALIVE_REQUEST, SIGN_ON_REQUEST

GOOD = KEEPALIVE_REQUEST.header


def _with(offset: int, value: bytes, raw: bytes = GOOD) -> bytes:
    out = raw[:offset] + value + raw[offset + len(value) :]
    assert len(out) == 64
    return out


def test_length_range_is_98_to_1048672() -> None:
    assert (MIN_LENGTH, MAX_LENGTH) == (98, 1_048_672)


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0, b"XS", "magic"),
        (0, b"ts", "magic"),
        (2, b"02", "version"),
        (2, b"1 ", "version"),
        (4, b" KIOSK-0001     ", "terminal_id"),  # not left-justified
        (4, b"KIOSK 0001      ", "terminal_id"),  # a space inside
        (4, b"KIOSK.0001      ", "terminal_id"),  # outside the charset
        (4, b"                ", "terminal_id"),  # empty
        (4, b"KIOSK-0001\x00\x00\x00\x00\x00\x00", "terminal_id"),  # NUL padding
        (4, "KIOSK-00é1".encode().ljust(16), "terminal_id"),  # not ASCII
        (20, b"000000000000", "serial_number"),  # 0 is below the range
        (20, b"00000000000a", "serial_number"),
        (20, b" 00000000002", "serial_number"),  # space padding, not zero padding
        (20, b"+00000000002", "serial_number"),
        (32, b"03  ", "serv_type"),
        (32, b"-003", "serv_type"),
        (36, b"q", "direction"),
        (36, b"X", "direction"),
        (37, b"2", "end_flag"),
        (38, b"0000a", "err_number"),
        (38, b" 0000", "err_number"),
        (43, b"176411520100 ", "timestamp"),
        (43, b"-764115201000", "timestamp"),
        (56, b"A1B2C3D4", "session_id"),  # uppercase hex
        (56, b"a1b2c3dg", "session_id"),
        (56, b"a1b2c3d ", "session_id"),
    ],
)
def test_each_header_field_format(offset: int, value: bytes, field: str) -> None:
    result = parse_header(_with(offset, value))
    assert isinstance(result, Malformed)
    assert result.field == field


def test_unicode_digits_are_not_decimal() -> None:
    # "٣" (Arabic-Indic three) passes str.isdigit(); the header is ASCII only.
    raw = GOOD[:32] + "٣".encode() + b"03" + GOOD[36:]
    assert isinstance(parse_header(raw[:64]), Malformed)


def test_echo_keeps_only_well_formed_fields() -> None:
    bad_magic = parse_header(_with(0, b"XX"))
    assert isinstance(bad_magic, Malformed)
    assert bad_magic.echo == Echo("KIOSK-0001", 2, 3)

    bad_terminal_and_serial = parse_header(
        _with(20, b"00000000000x", _with(4, b"bad id!         "))
    )
    assert isinstance(bad_terminal_and_serial, Malformed)
    assert bad_terminal_and_serial.field == "terminal_id"
    assert bad_terminal_and_serial.echo == Echo(None, None, 3)

    garbage = parse_header(b"\xff" * 64)
    assert isinstance(garbage, Malformed)
    assert garbage.echo == Echo()


def test_header_of_wrong_size() -> None:
    assert parse_header(GOOD[:63]) == Malformed("header", Echo())


def test_valid_header_round_trips() -> None:
    parsed = parse_header(GOOD)
    assert isinstance(parsed, Header)
    assert encode_header(parsed) == GOOD


def test_sixteen_character_terminal_id_and_extremes() -> None:
    header = Header(
        "A" * 16, 999_999_999_999, 9999, "Q", False, "99999", 9_999_999_999_999, "ffffffff"
    )
    raw = encode_header(header)
    assert raw[4:20] == b"A" * 16
    assert parse_header(raw) == header


def test_response_placeholders_only_on_unauthenticated_errors() -> None:
    blank = Header("", 0, 0, "R", True, "10001", 1, "00000000")
    raw = encode_header(blank)
    assert raw[4:32] == b" " * 16 + b"0" * 12
    assert parse_header(raw) == blank
    # The same placeholders on a request, or on an authenticated error, are malformed.
    assert isinstance(parse_header(_with(36, b"Q", raw)), Malformed)
    assert isinstance(parse_header(_with(38, b"10006", raw)), Malformed)
    with pytest.raises(ValueError):
        encode_header(Header("", 0, 0, "R", True, "10006", 1, "00000000"))


@pytest.mark.parametrize(
    "header",
    [
        Header("", 1, 3, "Q", True, "00000", 1, "00000000"),
        Header("X" * 17, 1, 3, "Q", True, "00000", 1, "00000000"),
        Header("a b", 1, 3, "Q", True, "00000", 1, "00000000"),
        Header("K", 0, 3, "Q", True, "00000", 1, "00000000"),
        Header("K", 10**12, 3, "Q", True, "00000", 1, "00000000"),
        Header("K", 1, 10_000, "Q", True, "00000", 1, "00000000"),
        Header("K", 1, 3, "X", True, "00000", 1, "00000000"),
        Header("K", 1, 3, "Q", True, "0000", 1, "00000000"),
        Header("K", 1, 3, "Q", True, "00000", 10**13, "00000000"),
        Header("K", 1, 3, "Q", True, "00000", -1, "00000000"),
        Header("K", 1, 3, "Q", True, "00000", 1, "A1B2C3D4"),
    ],
)
def test_encoder_refuses_what_it_cannot_spell(header: Header) -> None:
    with pytest.raises(ValueError):
        encode_header(header)


def test_encode_frame_limits() -> None:
    header = parse_header(GOOD)
    assert isinstance(header, Header)
    with pytest.raises(ValueError):
        encode_frame(header, b"{", bytes(32))
    with pytest.raises(ValueError):
        encode_frame(header, b"{" + b" " * (1024 * 1024 - 1) + b"}", bytes(32))
    with pytest.raises(ValueError):
        encode_frame(header, b"{}", bytes(31))
    biggest = encode_frame(header, b"{" + b" " * (1024 * 1024 - 2) + b"}", bytes(32))
    assert int.from_bytes(biggest[:4], "big") == MAX_LENGTH
    assert isinstance(decode_frame(biggest), Frame)


@pytest.mark.parametrize("length", [0, 1, 97, MAX_LENGTH + 1, 2**32 - 1])
def test_length_outside_the_range_closes(length: int) -> None:
    data = length.to_bytes(4, "big") + SIGN_ON_REQUEST.wire[4:]
    assert decode_frame(data) == BadLength(length)


def test_smallest_frame() -> None:
    wire = KEEPALIVE_REQUEST.wire
    assert int.from_bytes(wire[:4], "big") == MIN_LENGTH
    assert isinstance(decode_frame(wire), Frame)


def test_truncated_and_overlong_single_frames() -> None:
    wire = SIGN_ON_REQUEST.wire
    for cut in (0, 3, 4, 68, len(wire) - 1):
        assert decode_frame(wire[:cut]) == Truncated(cut)
    assert isinstance(decode_frame(wire + b"\x00"), BadLength)


def test_tampered_header_is_malformed_frame_not_an_exception() -> None:
    wire = bytearray(SIGN_ON_REQUEST.wire)
    wire[4 + 36] = ord("Z")  # direction
    result = decode_frame(bytes(wire))
    assert isinstance(result, Malformed)
    assert result.field == "direction"
    assert result.echo == Echo("KIOSK-0001", 1, 1)
