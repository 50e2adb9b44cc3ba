"""Multi-frame answers (PROTOCOL.md, "Multi-frame messages").

A response too large for one frame is built in full (16 MiB at most), then split: the
first frame's body holds every field with the first run of ``items``, later frames hold
only ``{"items": [...]}``; all share the request's serial and serv_type, ``end_flag`` is
``0`` on all but the last, and each frame carries its own MAC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teleserve.gateway.body import encode_body
from teleserve.gateway.frame import MAX_BODY, RESPONSE, SUCCESS, Echo, Frame
from teleserve.gateway.reply import answer

MAX_MESSAGE = 16 * 1024 * 1024
ITEMS = "items"


class ResponseTooLarge(ValueError):
    """A handler built an answer TSP/1 cannot carry (over 16 MiB, or one item over a
    frame). Handlers bound their results; this is their bug, not the terminal's."""


def _item_size(item: Any) -> int:
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def split_bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The bodies of the frames carrying ``body``: one when it fits, else the first with
    every field and a run of ``items``, then ``{"items": [...]}`` runs."""
    whole = len(encode_body(body))
    if whole <= MAX_BODY:
        return [dict(body)]
    if whole > MAX_MESSAGE:
        raise ResponseTooLarge(f"answer of {whole} bytes is over 16 MiB")
    items = body.get(ITEMS)
    if not isinstance(items, list):
        raise ResponseTooLarge("only an answer with an items list can be split")
    sizes = [_item_size(item) for item in items]
    # "[]" holds no items; each further item costs its bytes plus a comma.
    first_base = len(encode_body({**body, ITEMS: []}))
    later_base = len(encode_body({ITEMS: []}))
    if first_base > MAX_BODY:
        raise ResponseTooLarge("the fields besides items do not fit one frame")
    runs: list[list[Any]] = []
    run_start, size = 0, first_base
    for i, item_size in enumerate(sizes):
        cost = item_size + (1 if i > run_start else 0)
        if size + cost <= MAX_BODY:
            size += cost
            continue
        if i == run_start and runs:
            raise ResponseTooLarge(f"item {i} does not fit one frame")
        # Close the run (the first may stay empty when the other fields fill it).
        runs.append(items[run_start:i])
        run_start, size = i, later_base + item_size
        if size > MAX_BODY:
            raise ResponseTooLarge(f"item {i} does not fit one frame")
    runs.append(items[run_start:])
    return [{**body, ITEMS: runs[0]}] + [{ITEMS: run} for run in runs[1:]]


def answer_frames(
    echo: Echo, body: Mapping[str, Any], *, key: bytes, session_id: str, now_ms: int
) -> list[bytes]:
    """A success answer as the frames that carry it."""
    parts = split_bodies(body)
    return [
        answer(
            echo,
            part,
            key=key,
            session_id=session_id,
            now_ms=now_ms,
            last=i == len(parts) - 1,
        )
        for i, part in enumerate(parts)
    ]


@dataclass(frozen=True, slots=True)
class AssemblyViolation:
    """A frame that cannot belong to the answer being assembled (``reason`` is a token)."""

    reason: str


class MessageAssembler:
    """The client side: collect the frames answering one request into one body.

    Feed each frame (its MAC already verified) with its parsed body; ``add`` returns
    ``None`` while more frames are due, the whole body after the last one, or a violation
    (the client then drops the connection: the stream no longer matches its request).
    """

    def __init__(self, request: Echo) -> None:
        self._request = request
        self._body: dict[str, Any] | None = None
        self._size = 0
        self._done = False

    def add(
        self, frame: Frame, body: Mapping[str, Any]
    ) -> dict[str, Any] | AssemblyViolation | None:
        h = frame.header
        if self._done:
            return AssemblyViolation("after_last")
        if h.direction != RESPONSE:
            return AssemblyViolation("not_a_response")
        if (h.serial, h.serv_type) != (self._request.serial, self._request.serv_type) or (
            h.terminal_id != self._request.terminal_id
        ):
            return AssemblyViolation("other_request")
        self._size += len(frame.body)
        if self._size > MAX_MESSAGE:
            return AssemblyViolation("too_large")
        if self._body is None:
            if h.err_number != SUCCESS and not h.last:
                return AssemblyViolation("split_error")
            self._body = dict(body)
            if not h.last and not isinstance(self._body.get(ITEMS), list):
                return AssemblyViolation("no_items")
        else:
            if h.err_number != SUCCESS:
                return AssemblyViolation("split_error")
            items = body.get(ITEMS)
            if set(body) != {ITEMS} or not isinstance(items, list):
                return AssemblyViolation("not_only_items")
            self._body[ITEMS].extend(items)
        if h.last:
            self._done = True
            return self._body
        return None
