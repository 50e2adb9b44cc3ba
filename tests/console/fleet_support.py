"""A small kiosk fleet over the demo organisation, made through the terminals services the
way the gateway feeds them (registration, STATUS_REPORTs, a collection), for the fleet
pages' tests here and the browser test."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from teleserve.core.actor import SYSTEM
from teleserve.core.clock import utcnow
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import cash, fleet
from teleserve.terminals import service as terminals

# terminal id → (site code, what it reports or None for never, registry status)
FLEET: dict[str, tuple[str, dict[str, str] | None, str]] = {
    "GZ-OK": ("GZ01", {}, "in_service"),
    "GZ-WARN": ("GZ01", {"paper": "low"}, "in_service"),
    "GZ-FAULT": ("GZ02", {"acceptor": "fault"}, "in_service"),
    "GZ-SILENT": ("GZ02", None, "in_service"),
    "GZ-OOS": ("GZ01", {}, "out_of_service"),
    "GZ-OFF": ("GZ03", {}, "disabled"),
    "SZ-OK": ("SZ01", {}, "in_service"),
}
EXPECTED_STATES = {
    "GZ-OK": "ok",
    "GZ-WARN": "warning",
    "GZ-FAULT": "fault",
    "GZ-SILENT": "not_reporting",
    "GZ-OOS": "out_of_service",
    "GZ-OFF": "disabled",
    "SZ-OK": "ok",
}


def report(
    *, acceptor: str = "ok", paper: str = "ok", version: str = "2.1.0", box: str = "BOX-1"
) -> dict[str, Any]:
    """A STATUS_REPORT body as ``gateway.fields`` hands it over."""
    return {
        "software_version": version,
        "uptime_s": 3600,
        "device_mode": "hardware",
        "devices": {"cash_acceptor": {"state": acceptor}, "printer": {"state": "ok"}},
        "cash_box": {
            "box_id": box,
            "notes": [{"value": 10000, "count": 3}, {"value": 5000, "count": 1}],
            "capacity_notes": 1000,
        },
        "printer_paper": paper,
    }


def build_fleet(engine: Engine) -> None:
    """Register ``FLEET``, send each reporting terminal one report (GZ-OK reports
    version 2.2.0, the others 2.1.0) and set the registry statuses."""
    with UnitOfWork(engine, SYSTEM) as uow:
        for terminal_id, (site, _state, _status) in FLEET.items():
            terminals.register_terminal(
                uow, {"terminal_id": terminal_id, "site": site, "device_mode": "xfs4iot"}
            )
        uow.commit()
    for terminal_id, (_site, state, status) in FLEET.items():
        with UnitOfWork(engine, SYSTEM) as uow:
            if status == "out_of_service":
                terminals.put_out_of_service(uow, terminal_id, "maintenance")
            elif status == "disabled":
                terminals.disable(uow, terminal_id, "suspected tampering")
            if state is not None:
                version = "2.2.0" if terminal_id == "GZ-OK" else "2.1.0"
                fleet.record_status_report(
                    uow.connection, terminal_id, report(version=version, **state)
                )
            uow.commit()


def collect_short(engine: Engine, terminal_id: str = "GZ-OK") -> cash.Collected:
    """Collect the terminal's BOX-1 counting one ¥50 note when nothing was deposited:
    a ¥50 surplus for finance."""
    with UnitOfWork(engine, SYSTEM) as uow:
        done = cash.collect_box(
            uow.connection,
            terminal_id,
            box_id="BOX-1",
            counted=[{"value": 5000, "count": 1}],
            operator_id="op-7",
            collected_at=utcnow(),
            new_box_id="BOX-2",
        )
        uow.commit()
    return done
