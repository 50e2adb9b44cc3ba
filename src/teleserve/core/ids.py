"""Identifiers: time-ordered opaque ids for rows, readable numbers for people."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds then 80 random bits (UUIDv7-like), so
    ids sort by creation time and index well."""
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{os.urandom(10).hex()}"
