"""Identifiers: time-ordered opaque ids for rows, readable numbers for people."""

from __future__ import annotations

import os
import threading
import time

# Random bits are read from the OS a few thousand ids at a time: one ``os.urandom`` call
# per id was a third of the id's cost, and batches make thousands of ids. Each thread has
# its own buffer, and a forked child drops the parent's (or both would hand out the same
# ids).
_IDS_PER_READ = 256
_RANDOM_HEX = 20  # 80 bits
_local = threading.local()


def _refill() -> list[str]:
    block = os.urandom(_IDS_PER_READ * _RANDOM_HEX // 2).hex()
    pool = [block[i : i + _RANDOM_HEX] for i in range(0, len(block), _RANDOM_HEX)]
    _local.pool = pool
    return pool


def _forget_after_fork() -> None:
    _local.pool = []


os.register_at_fork(after_in_child=_forget_after_fork)


def new_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds then 80 random bits (UUIDv7-like), so
    ids sort by creation time and index well."""
    pool: list[str] | None = getattr(_local, "pool", None)
    if not pool:
        pool = _refill()
    return f"{time.time_ns() // 1_000_000:012x}{pool.pop()}"
