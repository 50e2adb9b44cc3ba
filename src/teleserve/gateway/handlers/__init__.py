"""The serv_types the gateway serves, by area: each module exports ``HANDLERS`` (serv_type
→ handler, ``gateway.dispatch.Handler``). Everything not listed answers ``10004``.

- ``customer``: customer authentication and account queries (1001–1003, 1010, 1015);
- ``fleet``: the management channel (9001–9006);
- ``money``: REVERSAL, RECEIPT and TXN_STATUS (2009, 2010, 2012); the payments
  themselves (2001, 2002) are not plain handlers: they run in the gateway's
  group-commit writer (``gateway.money``).
"""

from __future__ import annotations

from teleserve.gateway.dispatch import Handler
from teleserve.gateway.handlers import customer, fleet, money


def installed_handlers() -> dict[int, Handler]:
    """Every plain handler of every area (a serv_type belongs to one area only)."""
    merged: dict[int, Handler] = {}
    for area in (customer, fleet, money):
        overlap = merged.keys() & area.HANDLERS.keys()
        if overlap:
            raise RuntimeError(f"serv_types served twice: {sorted(overlap)}")
        merged.update(area.HANDLERS)
    return merged
