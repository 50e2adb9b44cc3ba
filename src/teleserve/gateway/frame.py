"""The TSP/1 frame: ``length (uint32 BE) | header (64 ASCII bytes) | body (JSON) | mac (32)``.

``length`` counts header, body and MAC. Every header field has one spelling (fixed width,
zero-padded decimals, lowercase hex, space-padded terminal id), so a header that parses
re-encodes to the same bytes: the MAC a peer computed over its bytes is the MAC we compute
over ours.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from teleserve.gateway.errors import ZERO_MAC_CODES

MAGIC = b"TS"
VERSION = b"01"
LENGTH_SIZE = 4
HEADER_SIZE = 64
MAC_SIZE = 32
MIN_BODY = 2  # "{}"
MAX_BODY = 1024 * 1024  # 1 MiB
MIN_LENGTH = HEADER_SIZE + MIN_BODY + MAC_SIZE  # 98
MAX_LENGTH = HEADER_SIZE + MAX_BODY + MAC_SIZE  # 1,048,672
MAX_SERIAL = 999_999_999_999
MAX_TIMESTAMP = 9_999_999_999_999
ZERO_SESSION = "00000000"
ZERO_MAC = bytes(MAC_SIZE)
REQUEST = "Q"
RESPONSE = "R"
SUCCESS = "00000"

_TERMINAL_ID = re.compile(rb"([A-Za-z0-9_-]{1,16}) *")
_TERMINAL_ID_TEXT = re.compile(r"[A-Za-z0-9_-]{1,16}")
_BLANK_TERMINAL = b" " * 16
_SESSION_ID = re.compile(r"[0-9a-f]{8}")
_SERIAL = re.compile(rb"[0-9]{12}")
_SERV_TYPE = re.compile(rb"[0-9]{4}")
_ERR_NUMBER = re.compile(rb"[0-9]{5}")
_TIMESTAMP = re.compile(rb"[0-9]{13}")
_SESSION_ID_BYTES = re.compile(rb"[0-9a-f]{8}")
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Header:
    terminal_id: str
    serial: int
    serv_type: int
    direction: str
    last: bool  # end_flag: "1" last frame of the message, "0" more follow
    err_number: str
    timestamp_ms: int
    session_id: str

    @property
    def is_request(self) -> bool:
        return self.direction == REQUEST


@dataclass(frozen=True, slots=True)
class Echo:
    """What a reply to a malformed request may repeat: each field only if it was
    well-formed (PROTOCOL.md: "spaces / zeros otherwise")."""

    terminal_id: str | None = None
    serial: int | None = None
    serv_type: int | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    body: bytes
    mac: bytes

    @property
    def signed(self) -> bytes:
        """The bytes the MAC covers: header || body."""
        return encode_header(self.header) + self.body

    @property
    def echo(self) -> Echo:
        h = self.header
        return Echo(h.terminal_id, h.serial, h.serv_type)


@dataclass(frozen=True, slots=True)
class BadLength:
    """A length prefix outside 98 … 1,048,672: the stream cannot be trusted any further,
    so the server closes the connection without answering."""

    length: int


@dataclass(frozen=True, slots=True)
class Truncated:
    """The stream ended inside a frame (``pending`` bytes were left): closed, no answer."""

    pending: int


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame of a valid length whose header breaks a format rule: answered ``10001``
    (all-zero MAC), echoing what was well-formed, then the connection is closed.

    ``field`` names the first offending header field (it goes to ``details.field``).
    """

    field: str
    echo: Echo


Violation = BadLength | Truncated | Malformed


def encode_header(h: Header) -> bytes:
    """The 64 header bytes of ``h``; a field that cannot be spelled is a programming error
    (``ValueError``), never silently truncated."""
    placeholder = h.direction == RESPONSE and h.err_number in ZERO_MAC_CODES
    if h.terminal_id == "" and placeholder:
        terminal = _BLANK_TERMINAL
    elif _TERMINAL_ID_TEXT.fullmatch(h.terminal_id):
        terminal = h.terminal_id.encode("ascii").ljust(16, b" ")
    else:
        raise ValueError(f"terminal_id {h.terminal_id!r} is not [A-Za-z0-9_-]{{1,16}}")
    low = 0 if placeholder else 1
    if not low <= h.serial <= MAX_SERIAL:
        raise ValueError(f"serial {h.serial} outside {low} … {MAX_SERIAL}")
    if not 0 <= h.serv_type <= 9999:
        raise ValueError(f"serv_type {h.serv_type} is not four digits")
    if h.direction not in (REQUEST, RESPONSE):
        raise ValueError(f"direction {h.direction!r} is not Q or R")
    if not _ERR_NUMBER.fullmatch(h.err_number.encode("ascii", "replace")):
        raise ValueError(f"err_number {h.err_number!r} is not five digits")
    if not 0 <= h.timestamp_ms <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {h.timestamp_ms} is not 13 digits")
    if not _SESSION_ID.fullmatch(h.session_id):
        raise ValueError(f"session_id {h.session_id!r} is not 8 lowercase hex digits")
    return b"".join(
        (
            MAGIC,
            VERSION,
            terminal,
            b"%012d" % h.serial,
            b"%04d" % h.serv_type,
            h.direction.encode("ascii"),
            b"1" if h.last else b"0",
            h.err_number.encode("ascii"),
            b"%013d" % h.timestamp_ms,
            h.session_id.encode("ascii"),
        )
    )


def parse_header(raw: bytes) -> Header | Malformed:
    """Parse 64 header bytes. Only the format is checked here; what depends on the
    channel or the role (a request's direction, end_flag, err_number, session_id) is for
    ``checks``. A response may carry the placeholders of an unauthenticated error reply
    (blank terminal_id, zero serial) when its err_number is one of those replies'."""
    if len(raw) != HEADER_SIZE:
        return Malformed("header", Echo())
    terminal_raw = raw[4:20]
    serial_raw = raw[20:32]
    serv_raw = raw[32:36]
    direction_raw = raw[36:37]
    err_raw = raw[38:43]
    placeholder = (
        direction_raw == b"R"
        and _ERR_NUMBER.fullmatch(err_raw) is not None
        and err_raw.decode("ascii") in ZERO_MAC_CODES
    )

    terminal_match = _TERMINAL_ID.fullmatch(terminal_raw)
    terminal = terminal_match.group(1).decode("ascii") if terminal_match else None
    if terminal is None and placeholder and terminal_raw == _BLANK_TERMINAL:
        terminal = ""
    serial = int(serial_raw) if _SERIAL.fullmatch(serial_raw) else None
    if serial is not None and not (0 if placeholder else 1) <= serial:
        serial = None
    serv_type = int(serv_raw) if _SERV_TYPE.fullmatch(serv_raw) else None
    echo = Echo(terminal or None, serial or None, serv_type)

    bad: str | None = None
    if raw[0:2] != MAGIC:
        bad = "magic"
    elif raw[2:4] != VERSION:
        bad = "version"
    elif terminal is None:
        bad = "terminal_id"
    elif serial is None:
        bad = "serial_number"
    elif serv_type is None:
        bad = "serv_type"
    elif direction_raw not in (b"Q", b"R"):
        bad = "direction"
    elif raw[37:38] not in (b"0", b"1"):
        bad = "end_flag"
    elif not _ERR_NUMBER.fullmatch(err_raw):
        bad = "err_number"
    elif not _TIMESTAMP.fullmatch(raw[43:56]):
        bad = "timestamp"
    elif not _SESSION_ID_BYTES.fullmatch(raw[56:64]):
        bad = "session_id"
    if bad is not None:
        return Malformed(bad, echo)
    assert terminal is not None and serial is not None and serv_type is not None
    return Header(
        terminal_id=terminal,
        serial=serial,
        serv_type=serv_type,
        direction=direction_raw.decode("ascii"),
        last=raw[37:38] == b"1",
        err_number=err_raw.decode("ascii"),
        timestamp_ms=int(raw[43:56]),
        session_id=raw[56:64].decode("ascii"),
    )


def encode_frame(header: Header, body: bytes, mac: bytes) -> bytes:
    """``length || header || body || mac``; the MAC is computed by the caller (``mac``)."""
    if not MIN_BODY <= len(body) <= MAX_BODY:
        raise ValueError(f"a body has 2 … {MAX_BODY} bytes, not {len(body)}")
    if len(mac) != MAC_SIZE:
        raise ValueError("a MAC has 32 bytes")
    head = encode_header(header)
    return _LENGTH.pack(HEADER_SIZE + len(body) + MAC_SIZE) + head + body + mac


def length_ok(length: int) -> bool:
    return MIN_LENGTH <= length <= MAX_LENGTH


def read_length(prefix: bytes) -> int:
    value: int = _LENGTH.unpack(prefix)[0]
    return value


def split_payload(payload: bytes) -> Frame | Malformed:
    """A frame from the ``length`` bytes after the prefix (the caller checked the range)."""
    header = parse_header(payload[:HEADER_SIZE])
    if isinstance(header, Malformed):
        return header
    return Frame(header, payload[HEADER_SIZE:-MAC_SIZE], payload[-MAC_SIZE:])


def decode_frame(data: bytes) -> Frame | Violation:
    """Exactly one whole frame (prefix included), e.g. a management-channel request."""
    if len(data) < LENGTH_SIZE:
        return Truncated(len(data))
    length = read_length(data[:LENGTH_SIZE])
    if not length_ok(length):
        return BadLength(length)
    if len(data) - LENGTH_SIZE < length:
        return Truncated(len(data))
    if len(data) - LENGTH_SIZE > length:
        # Trailing bytes belong to no frame: on a one-frame exchange that is framing
        # gone wrong, not a second request.
        return BadLength(length)
    return split_payload(data[LENGTH_SIZE:])
