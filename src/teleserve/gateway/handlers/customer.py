"""Customer authentication and account queries on the business channel (1001–1003, 1010,
1015). Filled in by the customer-handlers slice."""

from __future__ import annotations

from teleserve.gateway.dispatch import Handler

HANDLERS: dict[int, Handler] = {}
