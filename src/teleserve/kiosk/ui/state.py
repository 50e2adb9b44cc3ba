"""What every route of the touch UI shares: the agent now serving (a remote ``restart``
replaces it; ``None`` while it starts), the sim devices' panel when the devices are
simulated, the settings and the customer at the screen."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from teleserve.kiosk.availability import Availability, Function
from teleserve.kiosk.journal import Entry, State
from teleserve.kiosk.ui.session import CustomerSession, Flash, end_session
from teleserve.kiosk.ui.settings import UiSettings

if TYPE_CHECKING:
    from teleserve.kiosk.agent import Agent
    from teleserve.kiosk.devices.sim import SimPanel

# Device states are polled at most this often for the screens (a home screen and its
# poll would otherwise ask every device several times a second).
REFRESH_EVERY_S = 1.0


class KioskUi:
    def __init__(self, settings: UiSettings, panel: SimPanel | None = None) -> None:
        self.settings = settings
        self.panel = panel
        self.agent: Agent | None = None
        self.session = CustomerSession()
        self._refreshed = 0.0

    async def functions(self, *, fresh: bool = False) -> dict[Function, Availability] | None:
        """The agent's functions with recent device states; None while no agent runs."""
        agent = self.agent
        if agent is None:
            return None
        now = time.monotonic()
        if fresh or now - self._refreshed >= REFRESH_EVERY_S:
            await agent.refresh_devices()
            self._refreshed = now
        return agent.functions()

    def last_payment(self) -> Entry | None:
        """This terminal's latest answered payment, if it is recent enough to be the
        receipt of the customer still at the screen (``last_payment_window_s``)."""
        agent = self.agent
        if agent is None:
            return None
        answered = agent.journal.entries(State.ANSWERED, serv_types=(2001, 2002))
        paid = [e for e in answered if e.err_number == "00000"]
        if not paid:
            return None
        latest = paid[-1]
        age_s = time.time() - latest.created_ms / 1000
        return latest if age_s <= self.settings.last_payment_window_s else None

    async def end(self, notice: Flash | None = None) -> None:
        async with self.session.lock:
            await end_session(self.session, self.agent, notice)
