"""Which customer functions the kiosk offers now, and why not when it does not.

A function is disabled while a device it needs is faulty or offline, or while the
terminal cannot reach the service (not signed on, refused, out of service). The reason
goes to the screen in both languages; the English text is the message id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from teleserve.core.i18n import _, translate
from teleserve.kiosk.devices.base import DeviceStatus


class Function(StrEnum):
    ACCOUNT = "account"  # number check, login with password / code, account summary
    CASH_PAYMENT = "cash_payment"
    CARD_PAYMENT = "card_payment"
    RECEIPT = "receipt"  # printing receipts (a reprint also needs the service)
    ID_LOGIN = "id_login"


class Link(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # not signed on (yet): reconnecting
    REFUSED = "refused"  # 10008: terminal unknown or decommissioned
    OUT_OF_SERVICE = "out_of_service"  # 10009 or a remote command


# The devices each function needs, and whether it needs the service.
REQUIRES: dict[Function, tuple[tuple[str, ...], bool]] = {
    Function.ACCOUNT: ((), True),
    Function.CASH_PAYMENT: (("cash_acceptor",), True),
    Function.CARD_PAYMENT: (("card_module",), True),
    Function.RECEIPT: (("receipt_printer",), False),
    Function.ID_LOGIN: (("id_card_reader",), True),
}

LINK_REASONS = {
    Link.OFFLINE: _("The service cannot be reached; reconnecting"),
    Link.REFUSED: _("This terminal is not recognised by the service"),
    Link.OUT_OF_SERVICE: _("This terminal is out of service"),
}

# A specific reason for the faults a customer can understand, else one per device.
DETAIL_REASONS = {
    "jam": _("Notes are jammed in the cash acceptor"),
    "box_full": _("The cash box is full"),
    "paper_out": _("The receipt printer is out of paper"),
}
DEVICE_REASONS = {
    "cash_acceptor": _("The cash acceptor is out of order"),
    "card_module": _("The card reader is out of order"),
    "receipt_printer": _("The receipt printer is out of order"),
    "id_card_reader": _("The ID card reader is out of order"),
}


@dataclass(frozen=True, slots=True)
class Availability:
    enabled: bool
    reason: str | None = None  # a message id; None when enabled

    def message(self, locale: str) -> str | None:
        return None if self.reason is None else translate(self.reason, locale)

    def as_dict(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "reason_en": self.message("en"),
            "reason_zh": self.message("zh-CN"),
        }


def evaluate(devices: Mapping[str, DeviceStatus], link: Link) -> dict[Function, Availability]:
    out: dict[Function, Availability] = {}
    for function, (needed, needs_service) in REQUIRES.items():
        out[function] = _one(devices, link, needed, needs_service)
    return out


def _one(
    devices: Mapping[str, DeviceStatus], link: Link, needed: tuple[str, ...], needs_service: bool
) -> Availability:
    if needs_service and link is not Link.ONLINE:
        return Availability(False, LINK_REASONS[link])
    for name in needed:
        status = devices.get(name)
        if status is None or not status.state.usable:
            detail = status.detail if status is not None else None
            reason = DETAIL_REASONS.get(detail or "") or DEVICE_REASONS[name]
            return Availability(False, reason)
    return Availability(True)
