"""Multi-frame answers: split at the 1 MiB body limit, reassembled by the client, with
every rule on the frames that follow the first."""

from __future__ import annotations

from typing import Any

import pytest

from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.frame import MAX_BODY, Echo, Frame, Header, decode_frame
from teleserve.gateway.mac import verify_mac
from teleserve.gateway.multiframe import (
    MAX_MESSAGE,
    AssemblyViolation,
    MessageAssembler,
    ResponseTooLarge,
    answer_frames,
    split_bodies,
)
from teleserve.gateway.reply import answer, error_reply
from teleserve.gateway.stream import FrameDecoder

from .vectors import SESSION_ID, SESSION_KEY, TERMINAL

ECHO = Echo(TERMINAL, 12, 1012)


def usage(n: int) -> dict[str, Any]:
    # A test-only large answer: n usage records of ~90 bytes each.
    items = [
        {
            "start_ms": 1764115200000 + i,
            "peer": "138****8000",
            "duration_s": i % 3600,
            "charge": i % 50,
        }
        for i in range(n)
    ]
    return {"month": "2026-10", "kind": "voice", "items": items, "total": n}


def decoded(wires: list[bytes]) -> list[tuple[Frame, dict[str, Any]]]:
    decoder = FrameDecoder()
    decoder.feed(b"".join(wires))
    out = []
    for frame in decoder.drain():
        assert isinstance(frame, Frame)
        assert verify_mac(frame, [SESSION_KEY]) == SESSION_KEY  # each frame its own MAC
        body = parse_body(frame.body)
        assert isinstance(body, dict)
        out.append((frame, body))
    return out


def assemble(
    frames: list[tuple[Frame, dict[str, Any]]],
) -> dict[str, Any] | AssemblyViolation | None:
    assembler = MessageAssembler(ECHO)
    result: dict[str, Any] | AssemblyViolation | None = None
    for frame, body in frames:
        result = assembler.add(frame, body)
        if isinstance(result, AssemblyViolation):
            return result
    return result


def test_small_answer_is_one_frame() -> None:
    assert split_bodies(usage(10)) == [usage(10)]
    frames = decoded(
        answer_frames(ECHO, usage(10), key=SESSION_KEY, session_id=SESSION_ID, now_ms=1)
    )
    assert len(frames) == 1 and frames[0][0].header.last
    assert assemble(frames) == usage(10)


def test_large_answer_splits_and_reassembles() -> None:
    whole = usage(40_000)  # about 2.6 MiB
    wires = answer_frames(ECHO, whole, key=SESSION_KEY, session_id=SESSION_ID, now_ms=1)
    frames = decoded(wires)
    assert len(frames) == -(-len(encode_body(whole)) // MAX_BODY) == 3
    assert [f.header.last for f, _ in frames] == [False, False, True]
    assert {(f.header.serial, f.header.serv_type) for f, _ in frames} == {(12, 1012)}
    assert all(len(f.body) <= MAX_BODY for f, _ in frames)
    first = frames[0][1]
    assert set(first) == {"month", "kind", "items", "total"}  # every field first
    assert all(set(body) == {"items"} for _, body in frames[1:])  # then only items
    assert assemble(frames) == whole
    # Frames are packed: each but the last could not take the next item.
    assert len(frames[0][0].body) > MAX_BODY - 200


def test_split_is_exact_at_the_limit() -> None:
    base = len(encode_body({"items": []}))
    item = "x" * 98  # 100 bytes as a JSON string
    # Exactly MAX_BODY in one frame: n items of 100 bytes plus n - 1 commas.
    n = (MAX_BODY - base + 1) // 101
    filler = MAX_BODY - base - (n * 101 - 1)
    body = {"items": [item] * (n - 1) + ["x" * (98 + filler)]}
    assert len(encode_body(body)) == MAX_BODY
    assert split_bodies(body) == [body]
    longer = {"items": [*body["items"], "y"]}
    parts = split_bodies(longer)
    assert len(parts) == 2
    assert parts[0]["items"] + parts[1]["items"] == longer["items"]


def test_other_fields_can_fill_the_first_frame() -> None:
    body = {"note": "n" * (MAX_BODY - 30), "items": ["a" * 100, "b"]}
    parts = split_bodies(body)
    assert parts[0] == {"note": body["note"], "items": []}
    assert parts[1] == {"items": ["a" * 100, "b"]}


@pytest.mark.parametrize(
    "body",
    [
        {"items": ["x" * (MAX_BODY)]},  # one item over a frame
        {"note": "x" * MAX_BODY, "items": []},  # no items to split by
        {"rows": ["x" * 100] * 20_000},  # too big, and not an items list
        {"items": ["x" * 1000] * (MAX_MESSAGE // 1000 + 1)},  # over 16 MiB
    ],
)
def test_answers_that_cannot_be_carried_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ResponseTooLarge):
        split_bodies(body)


def _frame(
    serial: int = 12, last: bool = True, err: str = "00000", body: dict[str, Any] | None = None
) -> tuple[Frame, dict[str, Any]]:
    header = Header(TERMINAL, serial, 1012, "R", last, err, 1, SESSION_ID)
    b = body if body is not None else {"items": []}
    return Frame(header, encode_body(b), bytes(32)), b


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([_frame(last=False), _frame(serial=13)], "other_request"),
        ([_frame(last=False), _frame(body={"items": [], "total": 1})], "not_only_items"),
        ([_frame(last=False), _frame(body={"items": {}})], "not_only_items"),
        ([_frame(last=False, body={"total": 1})], "no_items"),
        ([_frame(err="90001", last=False)], "split_error"),
        ([_frame(last=False), _frame(err="90001")], "split_error"),
        ([_frame(), _frame()], "after_last"),
    ],
)
def test_assembly_violations(frames: list[tuple[Frame, dict[str, Any]]], reason: str) -> None:
    assert assemble(frames) == AssemblyViolation(reason)


def test_assembly_refuses_a_request_frame_and_over_16_mib() -> None:
    request = Frame(Header(TERMINAL, 12, 1012, "Q", True, "00000", 1, SESSION_ID), b"{}", bytes(32))
    assert MessageAssembler(ECHO).add(request, {}) == AssemblyViolation("not_a_response")
    assembler = MessageAssembler(ECHO)
    chunk = {"items": ["x" * (MAX_BODY - 20)]}
    outcome: object = None
    for _ in range(17):
        outcome = assembler.add(*_frame(last=False, body=chunk))
        if outcome is not None:
            break
    assert outcome == AssemblyViolation("too_large")


def test_single_frame_error_answer_assembles() -> None:
    wire = error_reply(ECHO, "20010", key=SESSION_KEY, session_id=SESSION_ID, now_ms=1)
    frame = decode_frame(wire)
    assert isinstance(frame, Frame)
    body = parse_body(frame.body)
    assert isinstance(body, dict)
    result = MessageAssembler(ECHO).add(frame, body)
    assert isinstance(result, dict)
    assert result["error"]["code"] == "20010"


def test_answer_needs_a_whole_identity() -> None:
    with pytest.raises(ValueError):
        answer(Echo(TERMINAL, None, 3), {}, key=SESSION_KEY, session_id=SESSION_ID, now_ms=1)
