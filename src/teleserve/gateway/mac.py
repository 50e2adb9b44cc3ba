"""Frame MACs and the sign-on key exchange.

``mac = HMAC-SHA256(key, header || body)``; the key is the terminal's master key (SIGN_ON,
management channel), the session key (every other business frame) or none at all (an
all-zero MAC on the replies the server cannot or must not authenticate).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

from teleserve.gateway.frame import ZERO_MAC, ZERO_SESSION, Frame

KEY_SIZE = 32
NONCE_SIZE = 16
SESSION_LABEL = b"TSP1-session"
_NONCE_HEX = re.compile(r"[0-9a-fA-F]{32}")


def compute_mac(key: bytes | None, signed: bytes) -> bytes:
    """The MAC of ``signed`` (header || body); ``None`` is the all-zero MAC."""
    if key is None:
        return ZERO_MAC
    if len(key) != KEY_SIZE:
        raise ValueError("TSP/1 keys have 32 bytes")
    return hmac.digest(key, signed, hashlib.sha256)


def verify_mac(frame: Frame, keys: Sequence[bytes]) -> bytes | None:
    """The key in ``keys`` that authenticates ``frame`` (the reply is MAC'd with the same
    one: during a master-key rotation both keys are accepted), or ``None``.

    Every key is tried and compared in constant time, so neither the comparison nor the
    number of keys tried says how close a forgery came.
    """
    signed = frame.signed
    found: bytes | None = None
    for key in keys:
        if len(key) != KEY_SIZE:
            continue
        if hmac.compare_digest(hmac.digest(key, signed, hashlib.sha256), frame.mac):
            found = found or key
    return found


def derive_session_key(master_key: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """``HMAC-SHA256(master_key, b"TSP1-session" || client_nonce || server_nonce)``."""
    if len(client_nonce) != NONCE_SIZE or len(server_nonce) != NONCE_SIZE:
        raise ValueError("sign-on nonces have 16 bytes")
    return compute_mac(master_key, SESSION_LABEL + client_nonce + server_nonce)


def parse_nonce(text: object) -> bytes | None:
    """The 16 bytes behind a 32-hex-digit nonce, or ``None`` (``bytes.fromhex`` alone
    would also take spaces)."""
    if isinstance(text, str) and _NONCE_HEX.fullmatch(text):
        return bytes.fromhex(text)
    return None


def new_server_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def new_session_id() -> str:
    """Eight random lowercase hex digits, never ``00000000`` (that spelling means "no
    session" on the wire)."""
    while True:
        value = secrets.token_hex(4)
        if value != ZERO_SESSION:
            return value
