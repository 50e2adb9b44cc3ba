"""Throttling: one interface over the ``limits`` library (DESIGN.md sections 9 and 10).

A ``Throttle`` counts hits per key in a *moving window* (the last N seconds, not a
calendar minute, so a burst at a minute boundary cannot double the allowance). Storage is
in memory for now — per process, lost on restart, which suits short windows such as
"60 login attempts a minute per terminal". Shared storage (Redis, in the scale-out wave)
only changes the storage URI given to ``Throttle``; callers keep the same interface.

Counts that must survive restarts or be exact across processes (the daily one-time-code
caps, lockouts) live in the database with their domain, not here.

Usage::

    throttle = get_throttle()
    if not throttle.hit("cust-auth:terminal:K0001", Rate(60, 60)):
        raise RateLimited(...)
    # or, raising RateLimited with ``retry_after_s`` itself:
    throttle.enforce("msisdn-check:terminal:K0001", Rate(30, 60))
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from teleserve.core.errors import RateLimited
from teleserve.core.i18n import _

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_TEXT = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """At most ``amount`` hits in any window of ``seconds`` seconds."""

    amount: int
    seconds: int

    def __post_init__(self) -> None:
        if self.amount < 0 or self.seconds <= 0:
            raise ValueError(f"invalid rate {self.amount}/{self.seconds}s")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"30/minute"``, ``"5 per 10 seconds"``, ``"200/day"``."""
        match = _RATE_TEXT.match(text.lower())
        if match is None:
            raise ValueError(f"not a rate: {text!r}")
        amount, multiple, unit = match.groups()
        return cls(int(amount), int(multiple or 1) * _UNITS[unit])

    def item(self) -> RateLimitItemPerSecond:
        # Every rate becomes "amount per N seconds": one item type, exact windows.
        return RateLimitItemPerSecond(self.amount, self.seconds, namespace="teleserve")


class Throttle:
    """Moving-window counters per key, in the storage named by ``storage_uri``."""

    def __init__(self, storage_uri: str = "memory://") -> None:
        self.storage_uri = storage_uri
        self._storage: Any = storage_from_string(storage_uri)
        self._limiter = MovingWindowRateLimiter(self._storage)

    def hit(self, key: str, rate: Rate | str, cost: int = 1) -> bool:
        """Count ``cost`` hits for ``key``; ``False`` (nothing counted) if over the rate."""
        item = _as_rate(rate).item()
        return bool(self._limiter.hit(item, key, cost=cost))

    def test(self, key: str, rate: Rate | str, cost: int = 1) -> bool:
        """Whether ``cost`` more hits would be allowed now, without counting them."""
        item = _as_rate(rate).item()
        return bool(self._limiter.test(item, key, cost=cost))

    def remaining(self, key: str, rate: Rate | str) -> int:
        stats = self._limiter.get_window_stats(_as_rate(rate).item(), key)
        return max(int(stats.remaining), 0)

    def retry_after(self, key: str, rate: Rate | str) -> int:
        """Whole seconds until the oldest hit in the window expires (0 if not limited)."""
        rate = _as_rate(rate)
        if self.test(key, rate):
            return 0
        stats = self._limiter.get_window_stats(rate.item(), key)
        return max(1, math.ceil(float(stats.reset_time) - time.time()))

    def enforce(self, key: str, rate: Rate | str, cost: int = 1) -> None:
        """``hit``, raising ``RateLimited`` (with ``retry_after_s``) when over the rate."""
        if not self.hit(key, rate, cost):
            raise RateLimited(
                _("Too many requests; try again in {retry_after_s} seconds"),
                retry_after_s=self.retry_after(key, rate),
            )

    def clear(self, key: str, rate: Rate | str) -> None:
        self._limiter.clear(_as_rate(rate).item(), key)

    def reset(self) -> None:
        """Forget every counter (tests; an operator's "unblock everything")."""
        self._storage.reset()


def _as_rate(rate: Rate | str) -> Rate:
    return rate if isinstance(rate, Rate) else Rate.parse(rate)


_throttle: Throttle | None = None


def get_throttle() -> Throttle:
    """The process-wide throttle (in memory until a shared storage is configured)."""
    global _throttle
    if _throttle is None:
        _throttle = Throttle()
    return _throttle


def set_throttle(throttle: Throttle | None) -> Throttle | None:
    """Install ``throttle`` for this process (``None``: a fresh one on next use)."""
    global _throttle
    previous, _throttle = _throttle, throttle
    return previous
