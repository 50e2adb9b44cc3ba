"""Fuzzing the decoder and the checks (hypothesis): random bytes, mutated valid frames and
random read splits. Nothing raises but the typed violations, and no frame is returned
that is not exactly the bytes on the wire; no mutated frame is ever accepted."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from teleserve.gateway.body import BodyViolation, encode_body, parse_body
from teleserve.gateway.catalog import Channel
from teleserve.gateway.checks import Accepted, CloseSilently, Refusal, check_request
from teleserve.gateway.frame import (
    LENGTH_SIZE,
    MAX_SERIAL,
    MAX_TIMESTAMP,
    BadLength,
    Frame,
    Header,
    Malformed,
    encode_header,
    length_ok,
    parse_header,
)
from teleserve.gateway.stream import FrameDecoder

from .helpers import NOW, SESSION, TERMINALS, request
from .vectors import ALL

# A fuzzer wants more examples than the property tests' profile (the cheap ones get ten
# times as many; generating structured frames and JSON is what costs).
FUZZ = hsettings(max_examples=hsettings().max_examples * 10)
STRUCTURED = hsettings(max_examples=hsettings().max_examples * 2)
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(encode_body),
    st.binary(min_size=2, max_size=200),
)
headers = st.builds(
    Header,
    terminal_id=st.text(ID_CHARS, min_size=1, max_size=16),
    serial=st.integers(1, MAX_SERIAL),
    serv_type=st.integers(0, 9999),
    direction=st.sampled_from(["Q", "R"]),
    last=st.booleans(),
    err_number=st.integers(0, 99999).map("{:05d}".format),
    timestamp_ms=st.integers(0, MAX_TIMESTAMP),
    session_id=st.integers(0, 2**32 - 1).map("{:08x}".format),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    head = encode_header(draw(headers))
    body = draw(bodies)
    mac = draw(st.binary(min_size=32, max_size=32))
    return (64 + len(body) + 32).to_bytes(4, "big") + head + body + mac


def reference(data: bytes) -> list[tuple[str, bytes]]:
    """What a whole, non-incremental reading of ``data`` finds: ("frame"|"malformed",
    slice) per frame, ("bad", b"") for a bad length, nothing for a trailing partial."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    while len(data) - pos >= LENGTH_SIZE:
        length = int.from_bytes(data[pos : pos + LENGTH_SIZE], "big")
        if not length_ok(length):
            out.append(("bad", b""))
            break
        if len(data) - pos - LENGTH_SIZE < length:
            break
        chunk = data[pos : pos + LENGTH_SIZE + length]
        kind = "malformed" if isinstance(parse_header(chunk[4:68]), Malformed) else "frame"
        out.append((kind, chunk))
        pos += LENGTH_SIZE + length
    return out


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[Any], FrameDecoder]:
    decoder = FrameDecoder()
    got: list[Any] = []
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        decoder.feed(data[start:end])
        got.extend(decoder.drain())
        if got and isinstance(got[-1], BadLength):
            break
    return got, decoder


def assert_matches_reference(data: bytes, got: list[Any]) -> None:
    expected = reference(data)
    assert len(got) == len(expected)
    for item, (kind, chunk) in zip(got, expected, strict=True):
        if kind == "bad":
            assert isinstance(item, BadLength)
        elif kind == "malformed":
            assert isinstance(item, Malformed)
        else:
            # The frame is exactly the bytes on the wire, nothing more or less.
            assert isinstance(item, Frame)
            wire = len(chunk[4:]).to_bytes(4, "big") + encode_header(item.header)
            assert wire + item.body + item.mac == chunk


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 10**6), max_size=8))
def test_random_bytes_never_crash_the_decoder(data: bytes, cuts: list[int]) -> None:
    got, decoder = feed_in_pieces(data, cuts)
    assert_matches_reference(data, got)
    decoder.finish()


@FUZZ
@given(st.binary(min_size=4, max_size=64))
def test_random_bytes_behind_a_plausible_length(payload: bytes) -> None:
    # Most random lengths are out of range; this reaches the header parser with garbage.
    data = (64 + 2 + 32).to_bytes(4, "big") + payload.ljust(98, b"\x00")[:98]
    got, _ = feed_in_pieces(data, [])
    assert_matches_reference(data, got)


@STRUCTURED
@given(st.lists(frames(), min_size=1, max_size=5), st.lists(st.integers(0, 10**6), max_size=12))
def test_valid_frames_survive_any_split(wires: list[bytes], cuts: list[int]) -> None:
    data = b"".join(wires)
    got, decoder = feed_in_pieces(data, cuts)
    assert [isinstance(g, Frame) for g in got] == [True] * len(wires)
    rebuilt = [
        (64 + len(g.body) + 32).to_bytes(4, "big") + encode_header(g.header) + g.body + g.mac
        for g in got
    ]
    assert rebuilt == wires
    assert decoder.finish() is None


VALID_STREAM = [
    request(3, timestamp_ms=NOW),
    request(2012, {"original_serial": 5}, serial=8),
    request(
        2001,
        {
            "msisdn": "13800138000",
            "amount": 100,
            "notes": [{"value": 100, "count": 1}],
            "cash_box_id": "B1",
            "txn_time_ms": 1,
        },
        serial=9,
    ),
]


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(VALID_STREAM))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(mutations(), st.lists(st.integers(0, 10**6), max_size=8))
def test_mutated_frames_are_never_accepted(data: bytes, cuts: list[int]) -> None:
    got, decoder = feed_in_pieces(data, cuts)
    assert_matches_reference(data, got)
    decoder.finish()
    originals = {w[4:] for w in VALID_STREAM}
    for item in got:
        outcome = check_request(
            item, channel=Channel.BUSINESS, lookup=TERMINALS.get, session=SESSION, now_ms=NOW
        )
        assert isinstance(outcome, Accepted | Refusal | CloseSilently)
        if isinstance(outcome, Accepted):
            # Only a frame the mutations left whole gets through the MAC.
            assert isinstance(item, Frame)
            assert encode_header(item.header) + item.body + item.mac in originals
        elif isinstance(outcome, Refusal):
            outcome.reply(NOW)  # every refusal can be answered


@FUZZ
@given(st.binary(max_size=300))
def test_random_bodies_parse_or_are_refused(raw: bytes) -> None:
    result = parse_body(raw)
    assert isinstance(result, dict | BodyViolation)


@STRUCTURED
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_encoded_bodies_round_trip(body: dict[str, Any]) -> None:
    raw = encode_body(body)
    assert parse_body(raw) == body
    # Any JSON spelling of the same object parses the same (\\u escapes, spaces).
    assert parse_body(json.dumps(body, indent=1).encode()) == body


def test_vectors_are_frames_for_the_reference_too() -> None:
    data = b"".join(v.wire for v in ALL)
    got, _ = feed_in_pieces(data, [1, 2, 100])
    assert_matches_reference(data, got)
