"""Timers and published events of the terminals domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every, publishes
from teleserve.terminals import alarms, cash, fleet, journal, service

DAY = 24 * 3600


@every(DAY, name="terminals.purge_serial_records")
def purge_serial_records(uow: UnitOfWork) -> None:
    """Drop non-money serial records past their retention (the worker commits)."""
    service.purge_serial_records(uow)


# Facts for whoever subscribes (other systems; nothing inside subscribes yet: the
# gateway's terminal cache expires by itself within gateway_terminal_cache_s).
publishes(service.REGISTERED_TOPIC, service.STATUS_CHANGED_TOPIC, service.KEY_ROTATED_TOPIC)


# -- the fleet ---------------------------------------------------------------------------

# How often the escalation sweep looks for alarms nobody acknowledged; the wait before an
# alarm escalates is ``alarms.escalation_minutes()`` (15 minutes by default).
ALARM_SWEEP_S = 60


@every(ALARM_SWEEP_S, name="terminals.escalate_alarms")
def escalate_alarms(uow: UnitOfWork) -> None:
    """Raise the escalation level of alarms left unacknowledged (the worker commits)."""
    alarms.escalate_alarms(uow)


publishes(
    alarms.ALARM_RAISED_TOPIC,
    alarms.ALARM_ACKNOWLEDGED_TOPIC,
    alarms.ALARM_CLEARED_TOPIC,
    alarms.ALARM_ESCALATED_TOPIC,
    fleet.COMMAND_QUEUED_TOPIC,
    fleet.COMMAND_ACKNOWLEDGED_TOPIC,
    fleet.CONFIG_PUBLISHED_TOPIC,
    cash.CASH_COLLECTED_TOPIC,
    cash.CASH_DISCREPANCY_TOPIC,
    cash.EXCEPTION_RESOLVED_TOPIC,
    journal.JOURNAL_RECONCILED_TOPIC,
)
