"""``xfs4iot`` drivers: the kiosk's cash acceptor, card reader and receipt printer through
CEN XFS4IoT services (JSON over WebSocket), found through the service publisher.

``XfsDevices.discover`` asks the publisher (``ServicePublisher.GetServices``) which
services exist and each service (``Common.Capabilities``) which interfaces it
implements; the drivers then open their service's WebSocket on first use and reopen it
after a break (a service that cannot be reached is a device ``offline``).

XFS4IoT has no interface for the Chinese resident ID card reader (a certified reader
with its own SDK) nor, here, for sensors: the ID-card reader reports ``offline``
(``not_installed``, ID login disabled) and the sensors report nothing. See
docs/kiosk-xfs4iot.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from teleserve.kiosk.devices.base import (
    DeviceError,
    Devices,
    DeviceState,
    DeviceStatus,
    IdCardReader,
    IdRead,
    Sensors,
)
from teleserve.kiosk.devices.xfs4iot.card import Acquirer, NoAcquirer, SimAcquirer, XfsCardModule
from teleserve.kiosk.devices.xfs4iot.cash import XfsCashAcceptor
from teleserve.kiosk.devices.xfs4iot.printer import XfsPrinter
from teleserve.kiosk.devices.xfs4iot.protocol import (
    DEFAULT_PUBLISHER,
    XfsConnection,
    XfsRejected,
    XfsUnavailable,
    discover,
    publisher_uri,
)

__all__ = [
    "DEFAULT_PUBLISHER",
    "Acquirer",
    "NoAcquirer",
    "SimAcquirer",
    "XfsCardModule",
    "XfsCashAcceptor",
    "XfsDevices",
    "XfsPrinter",
    "XfsSetupError",
]

REQUIRED = ("CashAcceptor", "CardReader", "Printer")


class XfsSetupError(Exception):
    """The publisher cannot be reached or lacks a service the kiosk needs."""


class NoIdReader(IdCardReader):
    """No ID-card reader driver for this device set: ID login stays disabled."""

    @property
    def reader_id(self) -> str:
        return ""

    async def status(self) -> DeviceStatus:
        return DeviceStatus(DeviceState.OFFLINE, "not_installed")

    async def read(self) -> IdRead:
        raise DeviceError(self.name, "not_installed")


class NoSensors(Sensors):
    """No sensor driver for this device set: nothing to report, nothing failing."""

    async def status(self) -> DeviceStatus:
        return DeviceStatus(DeviceState.OK)

    async def readings(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class XfsDevices:
    """The discovered services and the drivers built on them."""

    services: dict[str, str]  # interface → service URI
    devices: Devices

    @classmethod
    async def discover(
        cls,
        url: str = DEFAULT_PUBLISHER,
        acquirer: Acquirer | None = None,
        *,
        capacity_notes: int = 2000,
        timeout_s: float = 10.0,
        cash_in_timeout_ms: int = 60_000,
        card_read_timeout_ms: int = 30_000,
    ) -> XfsDevices:
        """Raises ``XfsSetupError`` (with a sentence for the operator)."""
        try:
            uri = publisher_uri(url)
            services = await discover(uri, timeout_s=timeout_s)
        except ValueError as exc:
            raise XfsSetupError(str(exc)) from exc
        except (XfsUnavailable, XfsRejected, TimeoutError) as exc:
            raise XfsSetupError(
                f"the XFS4IoT service publisher at {url} cannot be reached ({exc})"
            ) from exc
        missing = [name for name in REQUIRED if name not in services]
        if missing:
            raise XfsSetupError(
                f"the XFS4IoT service publisher at {url} offers no {', '.join(missing)} service"
            )
        devices = Devices(
            cash=XfsCashAcceptor(
                XfsConnection(services["CashAcceptor"]),
                capacity_notes=capacity_notes,
                cash_in_timeout_ms=cash_in_timeout_ms,
            ),
            card=XfsCardModule(
                XfsConnection(services["CardReader"]),
                acquirer or NoAcquirer(),
                read_timeout_ms=card_read_timeout_ms,
            ),
            printer=XfsPrinter(XfsConnection(services["Printer"])),
            id_reader=NoIdReader(),
            sensors=NoSensors(),
        )
        return cls(services, devices)

    async def close(self) -> None:
        """Close the service connections (the drivers reopen them if used again)."""
        for device in (self.devices.cash, self.devices.card, self.devices.printer):
            conn = getattr(device, "conn", None)
            if isinstance(conn, XfsConnection):
                await conn.close()
