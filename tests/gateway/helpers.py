"""Building requests and a terminal table for the checks' tests."""

from __future__ import annotations

from typing import Any

from teleserve.gateway.body import encode_body
from teleserve.gateway.checks import SessionView, TerminalState, TerminalView
from teleserve.gateway.frame import Header
from teleserve.gateway.reply import signed_frame

from .vectors import MASTER_KEY, SESSION_ID, SESSION_KEY, TERMINAL

NOW = 1764115200000
OLD_KEY = bytes(range(100, 132))
TERMINALS = {
    TERMINAL: TerminalView(TERMINAL, TerminalState.IN_SERVICE, (MASTER_KEY,)),
    "ROTATING": TerminalView("ROTATING", TerminalState.IN_SERVICE, (MASTER_KEY, OLD_KEY)),
    "OOS-1": TerminalView("OOS-1", TerminalState.OUT_OF_SERVICE, (MASTER_KEY,)),
    "GONE-1": TerminalView("GONE-1", TerminalState.DECOMMISSIONED, (MASTER_KEY,)),
}
SESSION = SessionView(TERMINAL, SESSION_ID, SESSION_KEY, NOW + 86_400_000)


def request(
    serv_type: int,
    body: dict[str, Any] | bytes | None = None,
    *,
    terminal: str = TERMINAL,
    serial: int = 7,
    session_id: str | None = None,
    key: bytes | None = None,
    timestamp_ms: int = NOW,
    direction: str = "Q",
    last: bool = True,
    err_number: str = "00000",
) -> bytes:
    """A request frame; by default MAC'd and stamped the way a good terminal would."""
    signon_like = serv_type == 1 or serv_type >= 9000
    if session_id is None:
        session_id = "00000000" if signon_like else SESSION_ID
    if key is None:
        key = MASTER_KEY if signon_like else SESSION_KEY
    raw = body if isinstance(body, bytes) else encode_body(body or {})
    header = Header(
        terminal, serial, serv_type, direction, last, err_number, timestamp_ms, session_id
    )
    return signed_frame(header, raw, key)


SIGN_ON_BODY = {
    "client_nonce": "00112233445566778899aabbccddeeff",
    "software_version": "1.0.0",
    "last_serial": 0,
}
