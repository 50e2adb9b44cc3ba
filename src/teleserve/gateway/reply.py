"""Building the frames a server sends: answers, error replies and all-zero-MAC hints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teleserve.gateway.body import encode_body
from teleserve.gateway.errors import ERRORS, error_body
from teleserve.gateway.frame import (
    RESPONSE,
    SUCCESS,
    ZERO_SESSION,
    Echo,
    Header,
    encode_frame,
    encode_header,
)
from teleserve.gateway.mac import compute_mac


def signed_frame(header: Header, body: bytes, key: bytes | None) -> bytes:
    """The frame on the wire, MAC'd with ``key`` (``None``: all zeros)."""
    return encode_frame(header, body, compute_mac(key, encode_header(header) + body))


def answer(
    echo: Echo,
    body: Mapping[str, Any],
    *,
    key: bytes,
    session_id: str,
    now_ms: int,
    err_number: str = SUCCESS,
    last: bool = True,
) -> bytes:
    """An authenticated response to a well-formed request."""
    if echo.terminal_id is None or echo.serial is None or echo.serv_type is None:
        raise ValueError("an authenticated answer repeats the request's whole identity")
    header = Header(
        terminal_id=echo.terminal_id,
        serial=echo.serial,
        serv_type=echo.serv_type,
        direction=RESPONSE,
        last=last,
        err_number=err_number,
        timestamp_ms=now_ms,
        session_id=session_id,
    )
    return signed_frame(header, encode_body(body), key)


def error_reply(
    echo: Echo,
    code: str,
    details: Mapping[str, Any] | None = None,
    *,
    key: bytes | None,
    session_id: str,
    now_ms: int,
) -> bytes:
    """An error response. For the codes the server cannot or must not authenticate
    (10001, 10002, 10007, 10008) the key and session are ignored: all-zero MAC, session
    ``00000000``, and the request's identity only where it was well-formed."""
    body = encode_body(error_body(code, details))
    if ERRORS[code].zero_mac:
        header = Header(
            terminal_id=echo.terminal_id or "",
            serial=echo.serial or 0,
            serv_type=echo.serv_type or 0,
            direction=RESPONSE,
            last=True,
            err_number=code,
            timestamp_ms=now_ms,
            session_id=ZERO_SESSION,
        )
        return signed_frame(header, body, None)
    if key is None:
        raise ValueError(f"error {code} is MAC'd with the channel's key")
    return answer(
        echo,
        error_body(code, details),
        key=key,
        session_id=session_id,
        now_ms=now_ms,
        err_number=code,
    )
