"""The management channel (9001–9006): the terminals domain's fleet functions on the
request's connection, their answers shaped as PROTOCOL.md's table says.

Each handler runs inside the request's unit of work (the dispatcher commits, and records
the answers of 9002, 9003 and 9005). Domain refusals map onto TSP codes here:

- a box collected twice → ``20005`` (recorded: a resend gets it again);
- a ``new_box_id`` already used, a journal listing a serial twice → ``10005`` with the
  offending field (not recorded: nothing changed);
- an acknowledgement of an unknown command → ``20008`` (recorded).
"""

from __future__ import annotations

from datetime import date

from teleserve.core.uow import UnitOfWork
from teleserve.gateway import errors
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Handler, Result
from teleserve.gateway.errors import TspError
from teleserve.gateway.money_state import tsp_status
from teleserve.terminals import alarms, cash, fleet, journal
from teleserve.terminals.fleet_base import from_ms
from teleserve.terminals.fleet_models import AlarmSource

STATUS_REPORT, ALARM, CASH_COLLECTION, CONFIG_PULL, COMMAND_ACK, JOURNAL_UPLOAD = (
    9001,
    9002,
    9003,
    9004,
    9005,
    9006,
)


def _terminal(accepted: Accepted) -> str:
    return accepted.frame.header.terminal_id


def status_report(uow: UnitOfWork, accepted: Accepted) -> Result:
    answer = fleet.record_status_report(uow.connection, _terminal(accepted), accepted.body)
    return Result({"commands": answer.commands, "config_version": answer.config_version})


def alarm(uow: UnitOfWork, accepted: Accepted) -> Result:
    body = accepted.body
    raised = alarms.raise_alarm(
        uow.connection,
        _terminal(accepted),
        body["alarm_code"],
        body["severity"],
        body["device"],
        body["message"],
        from_ms(body["raised_ms"]),
        source=AlarmSource.terminal,
    )
    return Result({"alarm_id": raised.alarm_id})


def cash_collection(uow: UnitOfWork, accepted: Accepted) -> Result:
    body = accepted.body
    try:
        done = cash.collect_box(
            uow.connection,
            _terminal(accepted),
            box_id=body["box_id"],
            counted=body["counted"],
            operator_id=body["operator_id"],
            collected_at=from_ms(body["collected_ms"]),
            new_box_id=body["new_box_id"],
        )
    except cash.BoxAlreadyCollected as exc:
        raise TspError(
            errors.STATUS_NOT_ALLOWED, {"collection_id": exc.params["collection_id"]}
        ) from exc
    except cash.InvalidNewBox as exc:
        raise TspError(errors.INVALID_FIELDS, {"fields": ["new_box_id"]}) from exc
    return Result(
        {
            "collection_id": done.collection_id,
            "expected": done.expected,
            "discrepancy": done.discrepancy,
        }
    )


def config_pull(uow: UnitOfWork, accepted: Accepted) -> Result:
    config = fleet.config_pull(uow.connection, _terminal(accepted), accepted.body["config_version"])
    return Result({"config_version": config.version, "config": config.config})


def command_ack(uow: UnitOfWork, accepted: Accepted) -> Result:
    body = accepted.body
    try:
        fleet.acknowledge_command(
            uow.connection,
            _terminal(accepted),
            body["command_id"],
            body["result"],
            body.get("detail", ""),
        )
    except fleet.UnknownCommand as exc:
        raise TspError(errors.ORIGINAL_NOT_FOUND, {"command_id": body["command_id"]}) from exc
    return Result({})


def journal_upload(uow: UnitOfWork, accepted: Accepted) -> Result:
    body = accepted.body
    try:
        done = journal.reconcile_journal(
            uow.connection,
            _terminal(accepted),
            date.fromisoformat(body["business_date"]),
            body["entries"],
            tsp_status=tsp_status,
        )
    except journal.DuplicateSerial as exc:
        raise TspError(errors.INVALID_FIELDS, {"fields": [exc.path]}) from exc
    return Result(
        {
            "matched": done.matched,
            "missing_on_server": done.missing_on_server,
            "missing_on_terminal": done.missing_on_terminal,
            "mismatched": done.mismatched,
        }
    )


HANDLERS: dict[int, Handler] = {
    STATUS_REPORT: status_report,
    ALARM: alarm,
    CASH_COLLECTION: cash_collection,
    CONFIG_PULL: config_pull,
    COMMAND_ACK: command_ack,
    JOURNAL_UPLOAD: journal_upload,
}
