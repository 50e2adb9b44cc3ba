"""TOTP (RFC 6238) arithmetic for staff MFA: 6 digits, 30-second steps, SHA-1 — what
every authenticator app understands.

Time comes from ``teleserve.core.clock`` (never ``time.time``), so tests drive it with
``FrozenClock``. A code is accepted for the current step or one step either side (clock
drift between phone and server), and only for a step *later* than the last one accepted
for that user: the same code can never be replayed, nor an older one.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import pyotp

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of now
ISSUER = "Teleserve"

_CODE = re.compile(r"^\d{6}$")


def new_secret() -> str:
    """160 random bits, base32 (the RFC 4226 recommended length)."""
    return pyotp.random_base32(32)


def is_valid_secret(secret: str) -> bool:
    try:
        pyotp.TOTP(secret).generate_otp(0)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        return False
    return len(secret) >= 16


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans as a QR code."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    return totp.provisioning_uri(name=account, issuer_name=ISSUER)


def step_at(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def match_step(secret: str, code: str, at: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is acceptable at ``at``; else ``None``."""
    code = code.replace(" ", "").strip()
    if not _CODE.match(code):
        return None
    now_step = step_at(at)
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue  # already used, or older than a code already used
        if hmac.compare_digest(code_for_step(secret, step), code):
            return step
    return None
