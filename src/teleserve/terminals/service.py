"""Use cases of the terminals domain: the kiosk registry, its status machine and master keys.

Every function takes the caller's ``UnitOfWork``, checks the actor's permission
(``terminals.read`` / ``terminals.write``), scopes what it reads to the actor's org
subtree (an out-of-subtree terminal is ``NotFound``, like a missing one), audits every
change and emits an outbox event for it; none commits.

Master keys (PROTOCOL.md, MAC; DESIGN.md section 9): 32 random bytes made at
registration and at each rotation, returned once in clear (hex) to whoever installs
them, stored AES-GCM encrypted and bound to the terminal id (``core.crypto``), never
readable by staff afterwards. A rotation keeps the previous key valid for a grace
period (``settings.terminal_key_grace_hours`` by default) so a kiosk can be re-keyed
without downtime; only the gateway reads keys, through ``terminal_access`` (system actor
only). The serial records the gateway keeps are in ``terminals.serials``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.exc import IntegrityError

from teleserve.core import crypto
from teleserve.core.actor import ActorKind
from teleserve.core.clock import as_utc, utcnow
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError, parse_input
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.terminals import serials
from teleserve.terminals.models import (
    DeviceMode,
    Terminal,
    TerminalMasterKey,
    TerminalStatus,
    key_table,
    terminal_table,
)
from teleserve.terminals.schemas import (
    RegisteredTerminal,
    RotatedKey,
    TerminalAccess,
    TerminalOut,
    TerminalSpec,
)

__all__ = [
    "KEY_ROTATED_TOPIC",
    "REGISTERED_TOPIC",
    "STATUS_CHANGED_TOPIC",
    "change_status",
    "decommission",
    "disable",
    "enable",
    "get_terminal",
    "key_check_value",
    "list_terminals",
    "purge_serial_records",
    "put_out_of_service",
    "register_terminal",
    "rotate_master_key",
    "terminal_access",
]

REGISTERED_TOPIC = "terminals.registered"
STATUS_CHANGED_TOPIC = "terminals.status_changed"
KEY_ROTATED_TOPIC = "terminals.key_rotated"

TERMINAL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
KEY_BYTES = 32
# A grace period longer than this is a forgotten rotation, not a plan.
MAX_GRACE_HOURS = 24 * 30
_SITE_LEVELS = frozenset({"site", "hall"})
_KCV_LABEL = b"TSP1-kcv"
_NAME_MAX, _ADDRESS_MAX, _DESCRIPTION_MAX, _REASON_MAX = 100, 200, 500, 200

# The status machine, checked in one place (``change_status``). A decommissioned
# terminal never comes back: its id stays taken, because serial records and payments
# name terminals by it.
_TRANSITIONS: Mapping[TerminalStatus, frozenset[TerminalStatus]] = {
    TerminalStatus.in_service: frozenset(
        {TerminalStatus.out_of_service, TerminalStatus.disabled, TerminalStatus.decommissioned}
    ),
    TerminalStatus.out_of_service: frozenset(
        {TerminalStatus.in_service, TerminalStatus.disabled, TerminalStatus.decommissioned}
    ),
    TerminalStatus.disabled: frozenset(
        {TerminalStatus.in_service, TerminalStatus.out_of_service, TerminalStatus.decommissioned}
    ),
    TerminalStatus.decommissioned: frozenset(),
}

# The statuses the gateway lets through its door (the others answer 10008).
_ADMITTED = frozenset({TerminalStatus.in_service, TerminalStatus.out_of_service})


# -- small helpers ---------------------------------------------------------------------


def _key_purpose(terminal_id: str) -> str:
    # Bound to the terminal: a key row pasted under another terminal fails to decrypt.
    return f"terminals.master_key:{terminal_id}"


def key_check_value(key: bytes) -> str:
    """Six hex digits that identify a key without revealing it: the first 3 bytes of
    HMAC-SHA256(key, "TSP1-kcv")."""
    return hmac.digest(key, _KCV_LABEL, hashlib.sha256)[:3].hex()


def _text(value: str, field: str, maximum: int, *, required: bool = False) -> str:
    cleaned = value.strip()
    if len(cleaned) > maximum or (required and not cleaned):
        low = 1 if required else 0
        raise ValidationError(
            _("{field} must be {min} to {max} characters"), field=field, min=low, max=maximum
        )
    return cleaned


def _check_terminal_id(terminal_id: str) -> str:
    if not isinstance(terminal_id, str) or not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise ValidationError(
            _("A terminal id is 1 to 16 letters, digits, '-' or '_'"), code="invalid_terminal_id"
        )
    return terminal_id


def _device_mode(value: str | DeviceMode) -> DeviceMode:
    try:
        return DeviceMode(value)
    except ValueError:
        raise ValidationError(
            _("Unknown device mode {mode}: sim or xfs4iot"), mode=str(value)
        ) from None


def _status(value: str | TerminalStatus) -> TerminalStatus:
    try:
        return TerminalStatus(value)
    except ValueError:
        raise ValidationError(_("Unknown terminal status {status}"), status=str(value)) from None


def _no_such_terminal() -> NotFound:
    return NotFound(_("No such terminal"))


def _visible(uow: UnitOfWork, terminal_id: str, *, lock: bool = False) -> Terminal:
    query = select(Terminal).where(Terminal.terminal_id == terminal_id)
    if lock:  # PostgreSQL; SQLite writers are already serialised by BEGIN IMMEDIATE
        query = query.with_for_update().execution_options(populate_existing=True)
    terminal = uow.session.scalars(query).first()
    if terminal is None or not uow.actor.sees(terminal.org_path):
        raise _no_such_terminal()
    return terminal


def _new_key(uow: UnitOfWork, terminal: Terminal, now: datetime) -> tuple[bytes, TerminalMasterKey]:
    key = secrets.token_bytes(KEY_BYTES)
    row = TerminalMasterKey(
        id=new_id(),
        terminal_pk=terminal.id,
        key_enc=crypto.encrypt(key.hex(), _key_purpose(terminal.terminal_id)),
        check_value=key_check_value(key),
        created_at=now,
        created_by=uow.actor.id,
        valid_until=None,
    )
    uow.session.add(row)
    return key, row


def _live_keys(uow: UnitOfWork, terminal_pks: Sequence[str], now: datetime) -> list[Any]:
    """The keys still valid at ``now`` of these terminals (current and in-grace ones)."""
    rows: list[Any] = []
    for start in range(0, len(terminal_pks), 500):
        part = list(terminal_pks[start : start + 500])
        query = select(
            key_table.c.terminal_pk,
            key_table.c.check_value,
            key_table.c.valid_until,
        ).where(
            key_table.c.terminal_pk.in_(part),
            or_(key_table.c.valid_until.is_(None), key_table.c.valid_until > now),
        )
        rows.extend(uow.connection.execute(query))
    return rows


def _outs(uow: UnitOfWork, terminals: Sequence[Terminal]) -> list[TerminalOut]:
    now = utcnow()
    current: dict[str, str] = {}
    grace: dict[str, datetime] = {}
    for row in _live_keys(uow, [t.id for t in terminals], now):
        if row.valid_until is None:
            current[row.terminal_pk] = row.check_value
        else:
            until = as_utc(row.valid_until)
            grace[row.terminal_pk] = max(until, grace.get(row.terminal_pk, until))
    return [_out(t, current.get(t.id), grace.get(t.id)) for t in terminals]


def _out(terminal: Terminal, check_value: str | None, grace_until: datetime | None) -> TerminalOut:
    return TerminalOut(
        terminal_id=terminal.terminal_id,
        site_id=terminal.site_id,
        org_path=terminal.org_path,
        name=terminal.name,
        address=terminal.address,
        description=terminal.description,
        status=TerminalStatus(terminal.status),
        status_reason=terminal.status_reason,
        status_changed_at=terminal.status_changed_at,
        device_mode=DeviceMode(terminal.device_mode),
        software_version=terminal.software_version,
        config_version=terminal.config_version,
        created_at=terminal.created_at,
        updated_at=terminal.updated_at,
        key_check_value=check_value,
        previous_key_valid_until=grace_until,
    )


def _event(terminal: Terminal, **extra: Any) -> dict[str, Any]:
    return {
        "terminal_id": terminal.terminal_id,
        "site_id": terminal.site_id,
        "org_path": terminal.org_path,
        "status": terminal.status,
        **extra,
    }


# -- registration ----------------------------------------------------------------------


def register_terminal(
    uow: UnitOfWork, spec: TerminalSpec | Mapping[str, Any]
) -> RegisteredTerminal:
    """Register a terminal at a site (or hall) the actor can see, ``in_service``, with a
    fresh master key returned this once. Simulated devices are refused outside demo mode
    (DESIGN.md sections 2 and 9)."""
    uow.actor.require("terminals.write")
    spec = parse_input(TerminalSpec, spec)
    terminal_id = _check_terminal_id(spec.terminal_id)
    name = _text(spec.name or terminal_id, "name", _NAME_MAX, required=True)
    address = _text(spec.address, "address", _ADDRESS_MAX)
    description = _text(spec.description, "description", _DESCRIPTION_MAX)
    mode = _device_mode(spec.device_mode)
    if mode is DeviceMode.sim and not get_settings().is_demo:
        raise ValidationError(
            _("Terminals with simulated devices are refused outside demo mode"),
            code="simulated_devices_refused",
        )
    site = iam.get_org_unit_by_code(uow, spec.site)
    if site.level.value not in _SITE_LEVELS:
        raise ValidationError(
            _("The org unit {site} is a {level}: terminals stand at a site or a hall"),
            site=site.code,
            level=site.level.value,
        )
    taken = Conflict(
        _("The terminal id {terminal_id} is already registered (ids are never reused)"),
        code="terminal_id_taken",
        terminal_id=terminal_id,
    )
    exists = select(Terminal.id).where(Terminal.terminal_id == terminal_id)
    if uow.session.scalar(exists) is not None:
        raise taken
    now = utcnow()
    terminal = Terminal(
        id=new_id(),
        terminal_id=terminal_id,
        site_id=site.id,
        org_path=site.path,
        name=name,
        address=address,
        description=description,
        status=TerminalStatus.in_service.value,
        status_reason="",
        status_changed_at=now,
        device_mode=mode.value,
        software_version="",
        config_version=0,
        created_at=now,
        created_by=uow.actor.id,
        updated_at=now,
    )
    uow.session.add(terminal)
    try:
        uow.flush()  # a concurrent registration of the same id loses here
    except IntegrityError as exc:
        raise taken from exc
    key, key_row = _new_key(uow, terminal, now)
    uow.flush()
    uow.audit(
        "terminals.registered",
        "terminal",
        terminal.id,
        {
            "terminal_id": terminal_id,
            "site": site.code,
            "device_mode": mode.value,
            "key_check_value": key_row.check_value,
        },
    )
    uow.emit(REGISTERED_TOPIC, _event(terminal, device_mode=mode.value), key=terminal_id)
    return RegisteredTerminal(
        terminal=_out(terminal, key_row.check_value, None),
        master_key=key.hex(),
        key_check_value=key_row.check_value,
    )


# -- reads -----------------------------------------------------------------------------


def get_terminal(uow: UnitOfWork, terminal_id: str) -> TerminalOut:
    uow.actor.require("terminals.read")
    return _outs(uow, [_visible(uow, terminal_id)])[0]


def list_terminals(
    uow: UnitOfWork,
    *,
    site: str | None = None,
    status: str | TerminalStatus | Iterable[str | TerminalStatus] | None = None,
) -> list[TerminalOut]:
    """The terminals in the actor's subtree, by terminal id; ``site`` (an org unit code)
    and ``status`` (one or several) narrow the list."""
    uow.actor.require("terminals.read")
    query = select(Terminal).where(uow.actor.scope(Terminal.org_path))
    if site is not None:
        query = query.where(Terminal.site_id == iam.get_org_unit_by_code(uow, site).id)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        query = query.where(Terminal.status.in_(sorted(_status(s).value for s in wanted)))
    terminals = list(uow.session.scalars(query.order_by(Terminal.terminal_id)))
    return _outs(uow, terminals)


def terminal_access(uow: UnitOfWork, terminal_id: str) -> TerminalAccess | None:
    """The gateway's one read per terminal: status, admission and valid master keys
    (current first), or ``None`` for an unknown terminal. One indexed query and one
    AES-GCM decryption per valid key (two at most).

    Only the system actor (the gateway) may call it: keys are never readable by staff,
    whatever their permissions."""
    if uow.actor.kind is not ActorKind.system:
        raise PermissionDenied(_("Only the gateway reads terminal keys"))
    if not isinstance(terminal_id, str) or not TERMINAL_ID_RE.fullmatch(terminal_id):
        return None
    now = utcnow()
    t, k = terminal_table, key_table
    live = (k.c.terminal_pk == t.c.id) & or_(k.c.valid_until.is_(None), k.c.valid_until > now)
    query = (
        select(
            t.c.terminal_id,
            t.c.status,
            t.c.device_mode,
            t.c.org_path,
            t.c.site_id,
            k.c.key_enc,
            k.c.valid_until,
            k.c.created_at,
        )
        .select_from(t.outerjoin(k, live))
        .where(t.c.terminal_id == terminal_id)
    )
    rows = uow.connection.execute(query).all()
    if not rows:
        return None
    first = rows[0]
    # Current key (no end) first, then the others newest first.
    keyed = sorted(
        (row for row in rows if row.key_enc is not None),
        key=lambda row: (row.valid_until is not None, -as_utc(row.created_at).timestamp()),
    )
    purpose = _key_purpose(first.terminal_id)
    keys = tuple(bytes.fromhex(crypto.decrypt(row.key_enc, purpose)) for row in keyed)
    status = TerminalStatus(first.status)
    mode = DeviceMode(first.device_mode)
    admitted = status in _ADMITTED and bool(keys)
    if mode is DeviceMode.sim and not get_settings().is_demo:
        admitted = False  # a demo database started in production mode
    return TerminalAccess(
        terminal_id=first.terminal_id,
        status=status,
        device_mode=mode,
        admitted=admitted,
        master_keys=keys,
        org_path=first.org_path,
        site_id=first.site_id,
    )


def site_of_terminal(conn: Connection, terminal_id: str) -> str | None:
    """The site id of a terminal (receipts name the site); Core, no actor: the gateway
    asks for a terminal it has authenticated."""
    t = terminal_table
    found = conn.scalar(select(t.c.site_id).where(t.c.terminal_id == terminal_id))
    return None if found is None else str(found)


# -- status ----------------------------------------------------------------------------


def change_status(
    uow: UnitOfWork, terminal_id: str, target: str | TerminalStatus, reason: str = ""
) -> TerminalOut:
    """Move a terminal to ``target`` if the transition table allows it. Decommissioning
    ends every master key at once."""
    uow.actor.require("terminals.write")
    wanted = _status(target)
    why = _text(reason, "reason", _REASON_MAX)
    terminal = _visible(uow, terminal_id, lock=True)
    current = TerminalStatus(terminal.status)
    if wanted not in _TRANSITIONS[current]:
        raise Conflict(
            _("A terminal that is {current} cannot become {target}"),
            code="terminal_status_conflict",
            current=current.value,
            target=wanted.value,
        )
    now = utcnow()
    terminal.status = wanted.value
    terminal.status_reason = why
    terminal.status_changed_at = now
    terminal.updated_at = now
    if wanted is TerminalStatus.decommissioned:
        _end_keys(uow, terminal.id, now)
    uow.flush()
    uow.audit(
        "terminals.status_changed",
        "terminal",
        terminal.id,
        {"terminal_id": terminal_id, "from": current.value, "to": wanted.value, "reason": why},
    )
    uow.emit(
        STATUS_CHANGED_TOPIC,
        _event(terminal, previous_status=current.value, reason=why),
        key=terminal_id,
    )
    return _outs(uow, [terminal])[0]


def enable(uow: UnitOfWork, terminal_id: str, reason: str = "") -> TerminalOut:
    return change_status(uow, terminal_id, TerminalStatus.in_service, reason)


def put_out_of_service(uow: UnitOfWork, terminal_id: str, reason: str = "") -> TerminalOut:
    return change_status(uow, terminal_id, TerminalStatus.out_of_service, reason)


def disable(uow: UnitOfWork, terminal_id: str, reason: str = "") -> TerminalOut:
    return change_status(uow, terminal_id, TerminalStatus.disabled, reason)


def decommission(uow: UnitOfWork, terminal_id: str, reason: str = "") -> TerminalOut:
    return change_status(uow, terminal_id, TerminalStatus.decommissioned, reason)


# -- master keys -----------------------------------------------------------------------


def _end_keys(uow: UnitOfWork, terminal_pk: str, at: datetime) -> None:
    """End, at ``at``, every key of the terminal still valid then."""
    uow.session.execute(
        update(TerminalMasterKey)
        .where(
            TerminalMasterKey.terminal_pk == terminal_pk,
            or_(TerminalMasterKey.valid_until.is_(None), TerminalMasterKey.valid_until > at),
        )
        .values(valid_until=at)
        .execution_options(synchronize_session=False)
    )


def rotate_master_key(
    uow: UnitOfWork, terminal_id: str, *, grace_hours: float | None = None
) -> RotatedKey:
    """Issue a new master key (returned this once). The previous key stays valid for
    ``grace_hours`` (default ``settings.terminal_key_grace_hours``; 0 ends it at once,
    e.g. after a leak); a key left over from an earlier rotation still in its grace
    period ends now, so at most two keys are ever valid."""
    uow.actor.require("terminals.write")
    hours = get_settings().terminal_key_grace_hours if grace_hours is None else grace_hours
    if not 0 <= hours <= MAX_GRACE_HOURS:
        raise ValidationError(_("The grace period must be 0 to {max} hours"), max=MAX_GRACE_HOURS)
    terminal = _visible(uow, terminal_id, lock=True)
    if terminal.status == TerminalStatus.decommissioned.value:
        raise Conflict(
            _("The terminal {terminal_id} is decommissioned: it gets no new key"),
            code="terminal_status_conflict",
            terminal_id=terminal_id,
        )
    now = utcnow()
    previous = uow.session.scalars(
        select(TerminalMasterKey).where(
            TerminalMasterKey.terminal_pk == terminal.id,
            TerminalMasterKey.valid_until.is_(None),
        )
    ).first()
    _end_keys(uow, terminal.id, now)  # the older key of an unfinished rotation, if any
    until: datetime | None = None
    if previous is not None and hours > 0:
        until = now + timedelta(hours=hours)
        uow.session.execute(
            update(TerminalMasterKey)
            .where(TerminalMasterKey.id == previous.id)
            .values(valid_until=until)
            .execution_options(synchronize_session=False)
        )
    key, row = _new_key(uow, terminal, now)
    terminal.updated_at = now
    uow.flush()
    uow.audit(
        "terminals.key_rotated",
        "terminal",
        terminal.id,
        {
            "terminal_id": terminal_id,
            "key_check_value": row.check_value,
            "previous_key_check_value": previous.check_value if previous else None,
            "previous_key_valid_until": until.isoformat() if until else None,
        },
    )
    uow.emit(
        KEY_ROTATED_TOPIC,
        _event(
            terminal,
            key_check_value=row.check_value,
            previous_key_valid_until=until.isoformat() if until else None,
        ),
        key=terminal_id,
    )
    return RotatedKey(
        terminal_id=terminal_id,
        master_key=key.hex(),
        key_check_value=row.check_value,
        previous_key_valid_until=until,
    )


# -- serial records --------------------------------------------------------------------


def purge_serial_records(uow: UnitOfWork) -> int:
    """Delete the serial records past ``settings.terminal_serial_retention_days`` that
    PROTOCOL.md lets go (never money records, REVERSAL markers or a terminal's highest
    serial); a periodic worker task. Returns how many."""
    uow.actor.require("terminals.write")
    days = get_settings().terminal_serial_retention_days
    return serials.purge(uow.connection, utcnow() - timedelta(days=days))
