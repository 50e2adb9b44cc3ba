"""The incremental decoder on a byte stream: partial reads, several frames per read,
a poisoned stream after a bad length, truncation at the end."""

from __future__ import annotations

from teleserve.gateway.frame import MAX_LENGTH, BadLength, Frame, Malformed, Truncated
from teleserve.gateway.stream import FrameDecoder

from .helpers import request
from .vectors import ALL, KEEPALIVE_REQUEST, SIGN_ON_REQUEST


def test_several_frames_in_one_read() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(v.wire for v in ALL))
    frames = decoder.drain()
    assert [f.body for f in frames if isinstance(f, Frame)] == [v.body for v in ALL]
    assert decoder.next() is None
    assert decoder.buffered == 0


def test_partial_reads_wait_for_the_rest() -> None:
    wire = SIGN_ON_REQUEST.wire
    decoder = FrameDecoder()
    for cut in (1, 3, 4, 5, 68, len(wire) - 1):
        decoder = FrameDecoder()
        decoder.feed(wire[:cut])
        assert decoder.next() is None
        assert decoder.finish() == Truncated(cut)
        decoder.feed(wire[cut:])
        frame = decoder.next()
        assert isinstance(frame, Frame) and frame.body == SIGN_ON_REQUEST.body
        assert decoder.finish() is None


def test_a_frame_and_a_half() -> None:
    wire = KEEPALIVE_REQUEST.wire
    decoder = FrameDecoder()
    decoder.feed(wire + wire[:50])
    assert isinstance(decoder.next(), Frame)
    assert decoder.next() is None
    decoder.feed(wire[50:])
    assert isinstance(decoder.next(), Frame)


def test_bad_length_poisons_the_stream() -> None:
    decoder = FrameDecoder()
    decoder.feed(KEEPALIVE_REQUEST.wire + (97).to_bytes(4, "big") + KEEPALIVE_REQUEST.wire)
    assert isinstance(decoder.next(), Frame)
    assert decoder.next() == BadLength(97)
    decoder.feed(KEEPALIVE_REQUEST.wire)
    assert decoder.next() == BadLength(97)
    assert decoder.drain() == [BadLength(97)]
    assert decoder.failed == BadLength(97)
    assert decoder.finish() is None  # already reported; nothing more to say


def test_a_huge_length_is_refused_before_buffering_it() -> None:
    decoder = FrameDecoder()
    decoder.feed((MAX_LENGTH + 1).to_bytes(4, "big"))
    assert decoder.next() == BadLength(MAX_LENGTH + 1)
    assert decoder.buffered == 0


def test_malformed_frame_keeps_the_framing() -> None:
    bad = bytearray(KEEPALIVE_REQUEST.wire)
    bad[4] = ord("X")  # magic
    decoder = FrameDecoder()
    decoder.feed(bytes(bad) + KEEPALIVE_REQUEST.wire)
    first, second = decoder.drain()
    assert isinstance(first, Malformed) and first.field == "magic"
    assert isinstance(second, Frame)


def test_largest_frame_in_small_reads() -> None:
    head, tail = b'{"original_serial":1,"pad":"', b'"}'
    big = request(2012, head + b"x" * (1024 * 1024 - len(head) - len(tail)) + tail)
    assert int.from_bytes(big[:4], "big") == MAX_LENGTH
    decoder = FrameDecoder()
    got = []
    for start in range(0, len(big), 65536):
        decoder.feed(big[start : start + 65536])
        got.extend(decoder.drain())
    assert len(got) == 1 and isinstance(got[0], Frame)
    assert decoder.buffered == 0
