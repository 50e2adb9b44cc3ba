"""The management channel (9001–9006). Filled in by the fleet slice."""

from __future__ import annotations

from teleserve.gateway.dispatch import Handler

HANDLERS: dict[int, Handler] = {}
