"""What the three XFS4IoT drivers share: turning ``Common.Status`` and failed completions
into the agent's ``DeviceStatus`` and reason tokens."""

from __future__ import annotations

import re
from typing import Any

from teleserve.kiosk.devices.base import DeviceError, DeviceState, DeviceStatus
from teleserve.kiosk.devices.xfs4iot.protocol import (
    Completion,
    XfsConnection,
    XfsRejected,
    XfsUnavailable,
)

OFFLINE = DeviceStatus(DeviceState.OFFLINE, "offline")

# ``common.device`` → the agent's state. ``deviceBusy`` is a device executing a command
# (a cash-in waiting for notes): usable. ``starting``: not yet.
_DEVICE_STATES: dict[str, DeviceStatus | None] = {
    "online": None,
    "deviceBusy": None,
    "offline": OFFLINE,
    "powerOff": DeviceStatus(DeviceState.OFFLINE, "power_off"),
    "noDevice": DeviceStatus(DeviceState.OFFLINE, "no_device"),
    "starting": DeviceStatus(DeviceState.OFFLINE, "starting"),
    "hardwareError": DeviceStatus(DeviceState.FAULT, "hardware_error"),
    "userError": DeviceStatus(DeviceState.FAULT, "user_error"),
    "fraudAttempt": DeviceStatus(DeviceState.FAULT, "fraud_attempt"),
    "potentialFraud": DeviceStatus(DeviceState.FAULT, "fraud_attempt"),
}


def token(camel: str) -> str:
    """``hardwareError`` → ``hardware_error``: XFS4IoT names as the agent's tokens."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def device_status(payload: dict[str, Any]) -> DeviceStatus | None:
    """The state ``common.device`` gives; None when the device is usable (the caller then
    looks at its own interface's part of the status)."""
    common = payload.get("common")
    device = common.get("device") if isinstance(common, dict) else None
    if not isinstance(device, str):
        return DeviceStatus(DeviceState.FAULT, "unknown_status")
    return _DEVICE_STATES.get(device, DeviceStatus(DeviceState.FAULT, token(device)))


async def common_status(conn: XfsConnection) -> dict[str, Any] | None:
    """The ``Common.Status`` payload; None when the service cannot be reached."""
    try:
        done = await conn.command("Common.Status", timeout_ms=5_000)
    except (XfsUnavailable, XfsRejected, TimeoutError):
        return None
    return done.payload if done.ok else None


async def run(conn: XfsConnection, device: str, name: str, **kwargs: Any) -> Completion:
    """A command whose transport failure is the device being offline."""
    try:
        return await conn.command(name, **kwargs)
    except (XfsUnavailable, TimeoutError) as exc:
        raise DeviceError(device, "offline") from exc
    except XfsRejected as exc:
        raise DeviceError(device, token(exc.status)) from exc
