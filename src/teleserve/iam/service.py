"""Use cases of the iam domain: the organisation tree, staff users, logins with lockout and
TOTP MFA, and OAuth2 client-credentials API clients.

Every function takes the caller's ``UnitOfWork``, checks the actor's permission, scopes
what it reads to the actor's org subtree (out-of-subtree records are ``NotFound``, like
missing ones) and audits every change. Functions flush and never commit — with one
deliberate exception: a *failed* login or token request commits its failure record
(counter, lockout, audit) before raising, because the caller rolls back on errors and a
failure that vanishes would make lockout useless. Run ``authenticate`` and ``issue_token``
in a unit of work of their own.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from teleserve.core import crypto
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import as_utc, utcnow
from teleserve.core.errors import (
    AuthenticationFailed,
    Conflict,
    Locked,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import passwords, totp
from teleserve.iam.models import ApiClient, ApiToken, OrgUnit, StaffUser, StaffUserRole
from teleserve.iam.roles import (
    MFA_REQUIRED_ROLES,
    OPERATOR_WIDE_ROLES,
    ROLES,
    SCOPES,
    covers,
    permissions_of_roles,
    permissions_of_scopes,
)
from teleserve.iam.schemas import (
    ApiClientOut,
    CreatedApiClient,
    IssuedToken,
    MfaEnrolment,
    OrgLevel,
    OrgUnitOut,
    OrgUnitSpec,
    StaffUserOut,
    StaffUserSpec,
)

__all__ = [
    "ENROLMENT_ONLY",
    "actor_for_token",
    "actor_for_user",
    "authenticate",
    "begin_mfa_enrolment",
    "confirm_mfa_enrolment",
    "create_api_client",
    "create_org_unit",
    "create_org_units_batch",
    "create_user",
    "create_users_batch",
    "current_session_stamp",
    "deactivate_user",
    "get_api_client",
    "get_org_unit",
    "get_org_unit_by_code",
    "get_user",
    "is_enrolment_only",
    "list_api_clients",
    "list_org_units",
    "list_users",
    "org_path_of",
    "purge_expired_tokens",
    "reactivate_user",
    "reset_mfa",
    "revoke_api_client",
    "set_password",
    "set_roles",
    "unlock_user",
]

# The only power of a user who must use MFA but has not enrolled yet: enrol. The web
# layer sends such a session straight to the enrolment page.
ENROLMENT_ONLY = frozenset({"iam.mfa.enrol"})

_TOTP_PURPOSE = "iam.staff_user.totp_secret"
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_NAME_MAX = 100
_ROOT_PATH = "/"

# Which level may sit under which (a site is a kiosk location: under a city or a hall).
_PARENT_LEVELS: dict[OrgLevel, frozenset[OrgLevel]] = {
    OrgLevel.operator: frozenset(),
    OrgLevel.province: frozenset({OrgLevel.operator}),
    OrgLevel.city: frozenset({OrgLevel.province}),
    OrgLevel.hall: frozenset({OrgLevel.city}),
    OrgLevel.site: frozenset({OrgLevel.city, OrgLevel.hall}),
}
_LEVEL_RANK = {level: rank for rank, level in enumerate(OrgLevel)}


# -- small shared helpers --------------------------------------------------------------


def _commit_and_raise(uow: UnitOfWork, error: Exception) -> NoReturn:
    """Make a security failure durable, then report it (see the module docstring)."""
    uow.commit()
    raise error


def _flush(uow: UnitOfWork, conflict: Conflict) -> None:
    """Flush; a unique-key race lost to a concurrent writer becomes ``conflict``."""
    try:
        uow.flush()
    except IntegrityError as exc:
        raise conflict from exc


def _clean_name(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > _NAME_MAX:
        raise ValidationError(
            _("{field} must be 1 to {max} characters"), field=field, max=_NAME_MAX
        )
    return cleaned


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- organisation tree -----------------------------------------------------------------


def _level(value: str | OrgLevel) -> OrgLevel:
    try:
        return OrgLevel(value)
    except ValueError:
        raise ValidationError(_("Unknown org level {level}"), level=str(value)) from None


def _validated_spec(spec: OrgUnitSpec) -> OrgUnitSpec:
    if not _CODE_RE.match(spec.code):
        raise ValidationError(
            _("The org code {org_code} must be 1 to 32 letters, digits, '-' or '_'"),
            code="invalid_org_code",
            org_code=spec.code,
        )
    return spec.model_copy(
        update={
            "name_zh": _clean_name(spec.name_zh, "name_zh"),
            "name_en": _clean_name(spec.name_en, "name_en"),
        }
    )


def _check_parent_level(level: OrgLevel, parent_level: OrgLevel | None) -> None:
    allowed = _PARENT_LEVELS[level]
    if parent_level is None and allowed:
        raise ValidationError(_("A {level} unit needs a parent"), level=level.value)
    if parent_level is not None and parent_level not in allowed:
        raise ValidationError(
            _("A {level} unit cannot be placed under a {parent} unit"),
            level=level.value,
            parent=parent_level.value,
        )


def _require_root_creator(uow: UnitOfWork) -> None:
    if uow.actor.org_path != _ROOT_PATH:
        raise PermissionDenied(_("Only an operator-wide administrator can create the root"))


def _existing_root(uow: UnitOfWork) -> OrgUnit | None:
    return uow.session.scalars(
        select(OrgUnit).where(OrgUnit.level == OrgLevel.operator.value)
    ).first()


def _visible_unit(uow: UnitOfWork, org_id: str) -> OrgUnit:
    unit = uow.session.get(OrgUnit, org_id)
    if unit is None or not uow.actor.sees(unit.path):
        raise NotFound(_("No such org unit"))
    return unit


def create_org_unit(
    uow: UnitOfWork,
    code: str,
    name_zh: str,
    name_en: str,
    level: str | OrgLevel,
    parent_id: str | None = None,
) -> OrgUnitOut:
    """Create one org unit under ``parent_id`` (``None`` only for the operator root)."""
    uow.actor.require("iam.orgs.write")
    spec = _validated_spec(
        OrgUnitSpec(code=code, name_zh=name_zh, name_en=name_en, level=_level(level))
    )
    if spec.level is OrgLevel.operator:
        if parent_id is not None:
            raise ValidationError(_("The operator unit is the root and has no parent"))
        _require_root_creator(uow)
        root = _existing_root(uow)
        if root is not None:
            raise Conflict(
                _("The organisation tree already has its root {org_code}"), org_code=root.code
            )
        path = f"/{spec.code}/"
    else:
        if parent_id is None:
            raise ValidationError(_("A {level} unit needs a parent"), level=spec.level.value)
        parent = _visible_unit(uow, parent_id)
        _check_parent_level(spec.level, OrgLevel(parent.level))
        path = f"{parent.path}{spec.code}/"
    taken = Conflict(_("The org code {org_code} is already used"), org_code=spec.code)
    if uow.session.scalar(select(OrgUnit.id).where(OrgUnit.code == spec.code)) is not None:
        raise taken
    unit = OrgUnit(
        id=new_id(),
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        level=spec.level.value,
        parent_id=parent_id,
        path=path,
        created_at=utcnow(),
    )
    uow.session.add(unit)
    _flush(uow, taken)
    uow.audit("iam.org.created", "org_unit", unit.id, {"code": unit.code, "path": unit.path})
    return OrgUnitOut.model_validate(unit)


def create_org_units_batch(uow: UnitOfWork, specs: Sequence[OrgUnitSpec]) -> list[OrgUnitOut]:
    """Create many org units at once (the seed). Parents are named by code and may be in
    the batch or already exist; the batch may list them in any order. Everything is
    validated before anything is written. Returns the units in the order given."""
    uow.actor.require("iam.orgs.write")
    cleaned = [_validated_spec(spec) for spec in specs]
    codes = [spec.code for spec in cleaned]
    duplicates = {code for code, n in Counter(codes).items() if n > 1}
    if duplicates:
        raise ValidationError(_("The org code {org_code} appears twice"), org_code=min(duplicates))
    uow.flush()
    known = _units_by_code(uow, codes + [s.parent_code for s in cleaned if s.parent_code])
    for code in codes:
        if code in known:
            raise Conflict(_("The org code {org_code} is already used"), org_code=code)
    if any(spec.level is OrgLevel.operator for spec in cleaned):
        _require_root_creator(uow)
        root = _existing_root(uow)
        roots = [spec.code for spec in cleaned if spec.level is OrgLevel.operator]
        if root is not None or len(roots) > 1:
            existing = root.code if root is not None else roots[0]
            raise Conflict(
                _("The organisation tree already has its root {org_code}"), org_code=existing
            )

    batch_levels = {spec.code: spec.level for spec in cleaned}
    planned: dict[str, tuple[str, OrgLevel, str]] = {}  # code -> (id, level, path)
    rows: list[dict[str, object]] = []
    now = utcnow()
    # Parents before children: sort by level (stable, so sibling order is kept).
    for spec in sorted(cleaned, key=lambda s: _LEVEL_RANK[s.level]):
        parent_id, parent_level, parent_path = _batch_parent(
            uow, spec, planned, batch_levels, known
        )
        _check_parent_level(spec.level, parent_level)
        unit_id = new_id()
        path = f"{parent_path}{spec.code}/"
        planned[spec.code] = (unit_id, spec.level, path)
        rows.append(
            {
                "id": unit_id,
                "code": spec.code,
                "name_zh": spec.name_zh,
                "name_en": spec.name_en,
                "level": spec.level.value,
                "parent_id": parent_id,
                "path": path,
                "created_at": now,
            }
        )
    if rows:
        uow.connection.execute(insert(OrgUnit), rows)
    for row in rows:
        uow.audit(
            "iam.org.created",
            "org_unit",
            str(row["id"]),
            {"code": row["code"], "path": row["path"]},
        )
    by_code = {str(row["code"]): row for row in rows}
    return [OrgUnitOut.model_validate(by_code[code]) for code in codes]


def _units_by_code(uow: UnitOfWork, codes: Sequence[str]) -> dict[str, OrgUnit]:
    found: dict[str, OrgUnit] = {}
    for chunk in _chunks(sorted(set(codes))):
        for unit in uow.session.scalars(select(OrgUnit).where(OrgUnit.code.in_(chunk))):
            found[unit.code] = unit
    return found


def _batch_parent(
    uow: UnitOfWork,
    spec: OrgUnitSpec,
    planned: dict[str, tuple[str, OrgLevel, str]],
    batch_levels: dict[str, OrgLevel],
    known: dict[str, OrgUnit],
) -> tuple[str | None, OrgLevel | None, str]:
    """(parent id, parent level, parent path) for ``spec`` — ``"/"`` for the root."""
    if spec.parent_code is None:
        if spec.level is not OrgLevel.operator:
            raise ValidationError(_("A {level} unit needs a parent"), level=spec.level.value)
        return None, None, _ROOT_PATH
    if spec.level is OrgLevel.operator:
        raise ValidationError(_("The operator unit is the root and has no parent"))
    if spec.parent_code in planned:
        parent_id, parent_level, parent_path = planned[spec.parent_code]
        return parent_id, parent_level, parent_path
    if spec.parent_code in batch_levels:
        # In the batch but not placed yet: its level ranks at or below the child's.
        _check_parent_level(spec.level, batch_levels[spec.parent_code])
    parent = known.get(spec.parent_code)
    if parent is None or not uow.actor.sees(parent.path):
        raise NotFound(_("No such org unit"))
    return parent.id, OrgLevel(parent.level), parent.path


def get_org_unit(uow: UnitOfWork, org_id: str) -> OrgUnitOut:
    uow.actor.require("iam.orgs.read")
    return OrgUnitOut.model_validate(_visible_unit(uow, org_id))


def get_org_unit_by_code(uow: UnitOfWork, code: str) -> OrgUnitOut:
    uow.actor.require("iam.orgs.read")
    unit = uow.session.scalars(select(OrgUnit).where(OrgUnit.code == code)).first()
    if unit is None or not uow.actor.sees(unit.path):
        raise NotFound(_("No such org unit"))
    return OrgUnitOut.model_validate(unit)


def list_org_units(uow: UnitOfWork, *, level: str | OrgLevel | None = None) -> list[OrgUnitOut]:
    """The actor's own unit and everything under it, in tree order (by path)."""
    uow.actor.require("iam.orgs.read")
    query = select(OrgUnit).where(uow.actor.scope(OrgUnit.path)).order_by(OrgUnit.path)
    if level is not None:
        query = query.where(OrgUnit.level == _level(level).value)
    return [OrgUnitOut.model_validate(unit) for unit in uow.session.scalars(query)]


def org_path_of(uow: UnitOfWork, org_id: str) -> str:
    """The materialised path of an org unit the actor can see.

    Other domains call this to stamp their records with an owner's path; they check their
    own permission (e.g. ``customers.write``), so this asks for none beyond visibility —
    nobody can file a record under a unit outside their subtree."""
    return _visible_unit(uow, org_id).path


def org_unit_id_at(uow: UnitOfWork, path: str) -> str:
    """The id of the org unit at ``path``, if the actor can see it (else NotFound).

    The converse of ``org_path_of``: an actor that only knows its own path (an API client
    registering a customer under its own unit) finds the unit to file it under."""
    unit = uow.session.scalars(select(OrgUnit).where(OrgUnit.path == path)).first()
    if unit is None or not uow.actor.sees(unit.path):
        raise NotFound(_("No such org unit"))
    return unit.id


# -- staff users: shared pieces --------------------------------------------------------


def _normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME_RE.match(name):
        raise ValidationError(_("A username is 3 to 64 lowercase letters, digits, '.', '-' or '_'"))
    return name


def _validated_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    if not chosen:
        raise ValidationError(_("A user needs at least one role"))
    for role in sorted(chosen):
        if role not in ROLES:
            raise ValidationError(_("Unknown role {role}"), role=role)
    return chosen


def _require_grantable(actor: Actor, roles: frozenset[str]) -> None:
    """Nobody hands out a power they lack; operator-wide roles need an operator-wide
    actor. The same rule decides who may manage an existing user (their current roles)."""
    for role in sorted(roles):
        wide_ok = role not in OPERATOR_WIDE_ROLES or actor.org_path == _ROOT_PATH
        if not wide_ok or not covers(actor.permissions, ROLES[role]):
            raise PermissionDenied(_("You cannot grant or manage the role {role}"), role=role)


def _mfa_required(roles: frozenset[str]) -> bool:
    return bool(roles & MFA_REQUIRED_ROLES)


def _roles_of(uow: UnitOfWork, user_id: str) -> frozenset[str]:
    rows = uow.session.scalars(select(StaffUserRole.role).where(StaffUserRole.user_id == user_id))
    return frozenset(rows)


def _roles_of_many(uow: UnitOfWork, user_ids: Sequence[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {user_id: set() for user_id in user_ids}
    for chunk in _chunks(list(user_ids)):
        query = select(StaffUserRole.user_id, StaffUserRole.role).where(
            StaffUserRole.user_id.in_(chunk)
        )
        for user_id, role in uow.session.execute(query):
            found[user_id].add(role)
    return found


def _user_out(user: StaffUser, roles: Iterable[str]) -> StaffUserOut:
    held = frozenset(roles)
    return StaffUserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        org_id=user.org_id,
        org_path=user.org_path,
        roles=tuple(sorted(held)),
        active=user.active,
        locked_until=user.locked_until if _is_locked(user.locked_until, utcnow()) else None,
        mfa_enabled=user.mfa_secret_enc is not None,
        mfa_required=_mfa_required(held),
        last_login_at=user.last_login_at,
        created_at=user.created_at,
    )


def _is_self(actor: Actor, user_id: str) -> bool:
    return actor.kind is ActorKind.staff and actor.id == user_id


def _locked_user_row(uow: UnitOfWork, user_id: str) -> StaffUser | None:
    """The user's row, locked until the transaction ends (PostgreSQL; SQLite writers are
    already serialised by BEGIN IMMEDIATE)."""
    query = (
        select(StaffUser)
        .where(StaffUser.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return uow.session.scalars(query).first()


def _visible_user(uow: UnitOfWork, user_id: str) -> StaffUser:
    user = _locked_user_row(uow, user_id)
    if user is None or not uow.actor.sees(user.org_path):
        raise NotFound(_("No such user"))
    return user


def _managed_user(uow: UnitOfWork, user_id: str, *, allow_self: bool = False) -> StaffUser:
    """A user the actor may administer: ``iam.users.write``, in the actor's subtree, and
    holding only roles the actor could grant (an org admin cannot reset an admin)."""
    uow.actor.require("iam.users.write")
    if not allow_self and _is_self(uow.actor, user_id):
        raise PermissionDenied(_("Ask another administrator to change your own account"))
    user = _visible_user(uow, user_id)
    _require_grantable(uow.actor, _roles_of(uow, user.id))
    return user


def _rotate_stamp(user: StaffUser, now: datetime) -> None:
    """End every session of ``user`` (sessions carry the stamp they were issued with)."""
    user.session_stamp = new_id()
    user.updated_at = now


def _is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and as_utc(locked_until) > now


def _encrypt_secret(secret: str) -> str:
    return crypto.encrypt(secret, _TOTP_PURPOSE)


def _decrypt_secret(sealed: str) -> str:
    return crypto.decrypt(sealed, _TOTP_PURPOSE)


# -- staff users: creation and reads ---------------------------------------------------


def create_user(
    uow: UnitOfWork,
    username: str,
    display_name: str,
    password: str,
    org_id: str,
    roles: Iterable[str],
) -> StaffUserOut:
    uow.actor.require("iam.users.write")
    name = _normalise_username(username)
    shown = _clean_name(display_name, "display_name")
    chosen = _validated_roles(roles)
    _require_grantable(uow.actor, chosen)
    passwords.check_policy(password, name)
    # Hash before the first query: on SQLite the first statement takes the write lock,
    # and argon2 should not run while holding it.
    password_hash = passwords.hash_password(password)
    unit = _visible_unit(uow, org_id)
    taken = Conflict(_("The username {username} is taken"), username=name)
    if uow.session.scalar(select(StaffUser.id).where(StaffUser.username == name)) is not None:
        raise taken
    now = utcnow()
    user = StaffUser(
        id=new_id(),
        username=name,
        display_name=shown,
        org_id=unit.id,
        org_path=unit.path,
        password_hash=password_hash,
        active=True,
        failed_logins=0,
        session_stamp=new_id(),
        password_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(user)
    _flush(uow, taken)
    uow.session.add_all(StaffUserRole(user_id=user.id, role=role) for role in sorted(chosen))
    _flush(uow, taken)
    uow.audit(
        "iam.user.created",
        "staff_user",
        user.id,
        {"username": name, "org_path": unit.path, "roles": sorted(chosen)},
    )
    return _user_out(user, chosen)


def create_users_batch(
    uow: UnitOfWork, specs: Sequence[StaffUserSpec], *, password_hash: str
) -> list[StaffUserOut]:
    """Create many users sharing one precomputed argon2id hash (the seed: hundreds of
    users must not cost hundreds of 137 ms hashes). All rows are validated first, then
    written with two batched INSERTs."""
    uow.actor.require("iam.users.write")
    if not passwords.is_argon2id_hash(password_hash):
        raise ValidationError(_("The password hash must be an argon2id hash"))
    names = [_normalise_username(spec.username) for spec in specs]
    duplicates = {name for name, n in Counter(names).items() if n > 1}
    if duplicates:
        raise ValidationError(_("The username {username} appears twice"), username=min(duplicates))
    shown = [_clean_name(spec.display_name, "display_name") for spec in specs]
    role_sets = [_validated_roles(spec.roles) for spec in specs]
    for chosen in set(role_sets):
        _require_grantable(uow.actor, chosen)
    for spec in specs:
        if spec.mfa_secret is not None and not totp.is_valid_secret(spec.mfa_secret):
            raise ValidationError(
                _("The TOTP secret of {username} is not valid base32"), username=spec.username
            )
    units = _visible_units(uow, {spec.org_id for spec in specs})
    for chunk in _chunks(names):
        query = select(StaffUser.username).where(StaffUser.username.in_(chunk))
        taken = uow.session.scalars(query).first()
        if taken is not None:
            raise Conflict(_("The username {username} is taken"), username=taken)

    now = utcnow()
    users: list[dict[str, object]] = []
    role_rows: list[dict[str, object]] = []
    outs: list[StaffUserOut] = []
    for spec, name, display, chosen in zip(specs, names, shown, role_sets, strict=True):
        unit = units[spec.org_id]
        user = StaffUser(
            id=new_id(),
            username=name,
            display_name=display,
            org_id=unit.id,
            org_path=unit.path,
            password_hash=password_hash,
            active=True,
            failed_logins=0,
            mfa_secret_enc=_encrypt_secret(spec.mfa_secret) if spec.mfa_secret else None,
            mfa_enabled_at=now if spec.mfa_secret else None,
            session_stamp=new_id(),
            password_changed_at=now,
            created_at=now,
            updated_at=now,
        )
        users.append({c.key: getattr(user, c.key) for c in StaffUser.__table__.columns})
        role_rows.extend({"user_id": user.id, "role": role} for role in sorted(chosen))
        outs.append(_user_out(user, chosen))
    if users:
        uow.flush()
        uow.connection.execute(insert(StaffUser), users)
        uow.connection.execute(insert(StaffUserRole), role_rows)
    for out in outs:
        uow.audit(
            "iam.user.created",
            "staff_user",
            out.id,
            {"username": out.username, "org_path": out.org_path, "roles": list(out.roles)},
        )
    return outs


def _visible_units(uow: UnitOfWork, org_ids: set[str]) -> dict[str, OrgUnit]:
    found: dict[str, OrgUnit] = {}
    for chunk in _chunks(sorted(org_ids)):
        for row in uow.session.scalars(select(OrgUnit).where(OrgUnit.id.in_(chunk))):
            found[row.id] = row
    for org_id in org_ids:
        unit = found.get(org_id)
        if unit is None or not uow.actor.sees(unit.path):
            raise NotFound(_("No such org unit"))
    return found


def get_user(uow: UnitOfWork, user_id: str) -> StaffUserOut:
    """A user in the actor's subtree; anyone may read their own account."""
    if not _is_self(uow.actor, user_id):
        uow.actor.require("iam.users.read")
    user = uow.session.get(StaffUser, user_id)
    if user is None or not (_is_self(uow.actor, user_id) or uow.actor.sees(user.org_path)):
        raise NotFound(_("No such user"))
    return _user_out(user, _roles_of(uow, user.id))


def list_users(
    uow: UnitOfWork, *, org_id: str | None = None, include_inactive: bool = True
) -> list[StaffUserOut]:
    """Users in the actor's subtree (or under ``org_id`` inside it), by username."""
    uow.actor.require("iam.users.read")
    query = select(StaffUser).where(uow.actor.scope(StaffUser.org_path))
    if org_id is not None:
        query = query.where(
            StaffUser.org_path.startswith(org_path_of(uow, org_id), autoescape=True)
        )
    if not include_inactive:
        query = query.where(StaffUser.active.is_(True))
    users = list(uow.session.scalars(query.order_by(StaffUser.username)))
    roles = _roles_of_many(uow, [user.id for user in users])
    return [_user_out(user, roles[user.id]) for user in users]


# -- staff users: changes --------------------------------------------------------------


def set_password(
    uow: UnitOfWork, user_id: str, new_password: str, *, current_password: str | None = None
) -> None:
    """Change a password: users change their own with their current password;
    administrators reset other users' (which also lifts a lockout). Every session of the
    user ends."""
    is_self = _is_self(uow.actor, user_id)
    if is_self:
        if current_password is None:
            raise ValidationError(_("Enter your current password"))
        snapshot = _credentials_by_id(uow, user_id)
        if snapshot is None or not passwords.verify_password(
            snapshot.password_hash, current_password
        ):
            raise AuthenticationFailed(
                _("The current password is wrong"), code="invalid_credentials"
            )
        username = snapshot.username
    else:
        uow.actor.require("iam.users.write")
        target = _credentials_by_id(uow, user_id)
        if target is None or not uow.actor.sees(target.org_path):
            raise NotFound(_("No such user"))
        username = target.username
    passwords.check_policy(new_password, username)
    new_hash = passwords.hash_password(new_password)
    user = _visible_user(uow, user_id) if is_self else _managed_user(uow, user_id)
    now = utcnow()
    user.password_hash = new_hash
    user.password_changed_at = now
    if not is_self:
        user.failed_logins = 0
        user.locked_until = None
    _rotate_stamp(user, now)
    uow.flush()
    uow.audit(
        "iam.user.password_set",
        "staff_user",
        user.id,
        {"username": user.username, "by": "self" if is_self else "administrator"},
    )


def deactivate_user(uow: UnitOfWork, user_id: str) -> None:
    """Stop a user from logging in; their sessions end at once."""
    user = _managed_user(uow, user_id)
    if not user.active:
        raise Conflict(_("The user is already inactive"))
    user.active = False
    _rotate_stamp(user, utcnow())
    uow.flush()
    uow.audit("iam.user.deactivated", "staff_user", user.id, {"username": user.username})


def reactivate_user(uow: UnitOfWork, user_id: str) -> None:
    user = _managed_user(uow, user_id)
    if user.active:
        raise Conflict(_("The user is already active"))
    user.active = True
    user.updated_at = utcnow()
    uow.flush()
    uow.audit("iam.user.reactivated", "staff_user", user.id, {"username": user.username})


def unlock_user(uow: UnitOfWork, user_id: str) -> None:
    """Lift a lockout before it expires by itself."""
    user = _managed_user(uow, user_id)
    user.failed_logins = 0
    user.last_failed_at = None
    user.locked_until = None
    user.updated_at = utcnow()
    uow.flush()
    uow.audit("iam.user.unlocked", "staff_user", user.id, {"username": user.username})


def set_roles(uow: UnitOfWork, user_id: str, roles: Iterable[str]) -> StaffUserOut:
    """Replace a user's roles; the actor must be able to grant both old and new ones."""
    chosen = _validated_roles(roles)
    user = _managed_user(uow, user_id)
    _require_grantable(uow.actor, chosen)
    previous = _roles_of(uow, user.id)
    uow.session.execute(delete(StaffUserRole).where(StaffUserRole.user_id == user.id))
    uow.session.add_all(StaffUserRole(user_id=user.id, role=role) for role in sorted(chosen))
    _rotate_stamp(user, utcnow())
    uow.flush()
    uow.audit(
        "iam.user.roles_set",
        "staff_user",
        user.id,
        {"username": user.username, "from": sorted(previous), "to": sorted(chosen)},
    )
    return _user_out(user, chosen)


# -- staff MFA (TOTP) ------------------------------------------------------------------


def _require_self(uow: UnitOfWork, user_id: str) -> StaffUser:
    """MFA enrolment is done by the user in person: the secret must reach only them."""
    if not _is_self(uow.actor, user_id):
        raise PermissionDenied(_("Only the user can enrol their own authenticator"))
    user = _locked_user_row(uow, user_id)
    if user is None or not user.active:
        raise NotFound(_("No such user"))
    return user


def begin_mfa_enrolment(uow: UnitOfWork, user_id: str) -> MfaEnrolment:
    """A new TOTP secret for the acting user, pending until ``confirm_mfa_enrolment``;
    an existing authenticator keeps working until then."""
    user = _require_self(uow, user_id)
    secret = totp.new_secret()
    user.mfa_pending_secret_enc = _encrypt_secret(secret)
    user.updated_at = utcnow()
    uow.flush()
    uow.audit("iam.mfa.enrolment_started", "staff_user", user.id, {"username": user.username})
    return MfaEnrolment(secret, totp.provisioning_uri(secret, user.username))


def confirm_mfa_enrolment(uow: UnitOfWork, user_id: str, code: str) -> None:
    """Activate the pending secret once a first code from it is right. Every session of
    the user ends, so they log in again with the new authenticator."""
    user = _require_self(uow, user_id)
    if user.mfa_pending_secret_enc is None:
        raise ValidationError(_("No authenticator enrolment is in progress"))
    now = utcnow()
    step = totp.match_step(_decrypt_secret(user.mfa_pending_secret_enc), code, now, None)
    if step is None:
        raise ValidationError(
            _("The authenticator code is wrong; check the time on your phone and try again"),
            code="mfa_invalid",
        )
    user.mfa_secret_enc = user.mfa_pending_secret_enc
    user.mfa_pending_secret_enc = None
    user.mfa_enabled_at = now
    user.mfa_last_step = step  # the confirmation code cannot log in as well
    _rotate_stamp(user, now)
    uow.flush()
    uow.audit("iam.mfa.enrolled", "staff_user", user.id, {"username": user.username})


def reset_mfa(uow: UnitOfWork, user_id: str) -> None:
    """Forget a user's authenticator (lost phone); they enrol again at their next login."""
    user = _managed_user(uow, user_id)
    user.mfa_secret_enc = None
    user.mfa_pending_secret_enc = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    _rotate_stamp(user, utcnow())
    uow.flush()
    uow.audit("iam.mfa.reset", "staff_user", user.id, {"username": user.username})


# -- login and sessions ----------------------------------------------------------------


@dataclass(frozen=True)
class _Credentials:
    id: str
    username: str
    org_path: str
    password_hash: str
    locked_until: datetime | None


def _read_credentials(uow: UnitOfWork, where: ColumnElement[bool]) -> _Credentials | None:
    """Read login data on a separate read-only connection, so the slow argon2 check runs
    before the unit of work takes any lock (on SQLite the first statement of a writing
    transaction locks the whole database)."""
    query = select(
        StaffUser.id,
        StaffUser.username,
        StaffUser.org_path,
        StaffUser.password_hash,
        StaffUser.locked_until,
    ).where(where)
    with uow.engine.execution_options(readonly=True).connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return _Credentials(row.id, row.username, row.org_path, row.password_hash, row.locked_until)


def _credentials_by_id(uow: UnitOfWork, user_id: str) -> _Credentials | None:
    return _read_credentials(uow, StaffUser.id == user_id)


def _bad_credentials() -> AuthenticationFailed:
    # One message for unknown user, wrong password and inactive account: no enumeration.
    return AuthenticationFailed(_("Wrong username or password"), code="invalid_credentials")


def _locked_error(until: datetime) -> Locked:
    local = as_utc(until).astimezone(ZoneInfo(get_settings().timezone))
    return Locked(
        _("Too many failed logins; try again after {until}"),
        until=local.strftime("%Y-%m-%d %H:%M:%S"),
        until_iso=as_utc(until).isoformat(),
    )


def _record_failure(uow: UnitOfWork, user: StaffUser, now: datetime, reason: str) -> Locked | None:
    """Count a failed attempt; the one that reaches the limit locks the account.

    Failures count towards the limit while each follows the previous one within the
    lockout period; an older streak starts again from one."""
    settings = get_settings()
    period = timedelta(minutes=settings.staff_lockout_minutes)
    if user.last_failed_at is None or now - as_utc(user.last_failed_at) > period:
        user.failed_logins = 0
    user.failed_logins += 1
    user.last_failed_at = now
    uow.audit(
        "iam.login.failed",
        "staff_user",
        user.id,
        {"username": user.username, "reason": reason, "failures": user.failed_logins},
    )
    if user.failed_logins < settings.staff_login_max_failures:
        return None
    user.locked_until = now + period
    user.failed_logins = 0
    uow.audit(
        "iam.login.locked",
        "staff_user",
        user.id,
        {"username": user.username, "until": user.locked_until.isoformat()},
    )
    return _locked_error(user.locked_until)


def _refuse_locked(uow: UnitOfWork, user_id: str, username: str, until: datetime) -> NoReturn:
    uow.audit(
        "iam.login.refused", "staff_user", user_id, {"username": username, "reason": "locked"}
    )
    _commit_and_raise(uow, _locked_error(until))


def authenticate(
    uow: UnitOfWork, username: str, password: str, totp_code: str | None = None
) -> Actor:
    """Check a staff login and return the user's actor.

    Errors: ``AuthenticationFailed`` (code ``invalid_credentials``: one message for an
    unknown user, a wrong password or an inactive account); ``Locked`` (with ``until``)
    after ``staff_login_max_failures`` failures, for ``staff_lockout_minutes``;
    ``AuthenticationFailed`` code ``mfa_required`` when the password is right but the
    user's TOTP code is missing, ``mfa_invalid`` when it is wrong or replayed (counts as
    a failure). A user whose roles require MFA but who has not enrolled gets an actor
    holding only ``ENROLMENT_ONLY``. Failures are committed here (module docstring).
    """
    name = username.strip().lower()
    now = utcnow()
    plausible = 0 < len(name) <= 64  # longer input can match nobody: skip the query
    creds = _read_credentials(uow, StaffUser.username == name) if plausible else None
    name = name[:64]  # as recorded in the audit log
    if creds is None:
        passwords.dummy_verify(password)
        uow.audit(
            "iam.login.failed",
            "staff_user",
            "unknown",
            {"username": name, "reason": "unknown_user"},
        )
        _commit_and_raise(uow, _bad_credentials())
    if _is_locked(creds.locked_until, now):
        assert creds.locked_until is not None
        _refuse_locked(uow, creds.id, name, creds.locked_until)
    password_ok = passwords.verify_password(creds.password_hash, password)
    upgraded = (
        passwords.hash_password(password)
        if password_ok and passwords.needs_rehash(creds.password_hash)
        else None
    )

    user = _locked_user_row(uow, creds.id)
    if user is None:  # users are never deleted; treat a vanished row as unknown
        _commit_and_raise(uow, _bad_credentials())
    if _is_locked(user.locked_until, now):  # a concurrent attempt locked it meanwhile
        assert user.locked_until is not None
        _refuse_locked(uow, user.id, name, user.locked_until)
    if not password_ok or user.password_hash != creds.password_hash:
        _commit_and_raise(uow, _record_failure(uow, user, now, "password") or _bad_credentials())
    if not user.active:
        uow.audit(
            "iam.login.failed", "staff_user", user.id, {"username": name, "reason": "inactive"}
        )
        _commit_and_raise(uow, _bad_credentials())

    if user.mfa_secret_enc is not None:
        _check_totp(uow, user, totp_code, now)
    user.failed_logins = 0
    user.last_failed_at = None
    user.locked_until = None
    user.last_login_at = now
    if upgraded is not None:
        user.password_hash = upgraded
    actor = _actor_of(user, _roles_of(uow, user.id))
    uow.flush()
    uow.audit(
        "iam.login.succeeded",
        "staff_user",
        user.id,
        {
            "username": name,
            "mfa": user.mfa_secret_enc is not None,
            "enrolment_only": is_enrolment_only(actor),
        },
    )
    return actor


def _check_totp(uow: UnitOfWork, user: StaffUser, code: str | None, now: datetime) -> None:
    assert user.mfa_secret_enc is not None
    if not code:
        # The normal first step of an MFA login: not a failure, nothing to record.
        raise AuthenticationFailed(
            _("Enter the code from your authenticator app"), code="mfa_required"
        )
    secret = _decrypt_secret(user.mfa_secret_enc)
    step = totp.match_step(secret, code, now, user.mfa_last_step)
    if step is None:
        wrong = AuthenticationFailed(
            _("The authenticator code is wrong or was already used"), code="mfa_invalid"
        )
        _commit_and_raise(uow, _record_failure(uow, user, now, "totp") or wrong)
    user.mfa_last_step = step


def _actor_of(user: StaffUser, roles: frozenset[str]) -> Actor:
    if _mfa_required(roles) and user.mfa_secret_enc is None:
        return Actor(ActorKind.staff, user.id, user.org_path, ENROLMENT_ONLY, user.username)
    org_path = _ROOT_PATH if roles & OPERATOR_WIDE_ROLES else user.org_path
    return Actor(ActorKind.staff, user.id, org_path, permissions_of_roles(roles), user.username)


def is_enrolment_only(actor: Actor) -> bool:
    """Whether ``actor`` may do nothing but enrol an authenticator."""
    return actor.permissions == ENROLMENT_ONLY


def actor_for_user(uow: UnitOfWork, user_id: str, *, stamp: str | None = None) -> Actor:
    """The actor of a logged-in user, rebuilt from the current roles (sessions call this
    on each request). With ``stamp`` — the value the session was issued with — a session
    older than a password, role, MFA or status change is refused."""
    user = uow.session.get(StaffUser, user_id)
    if user is None or not user.active or (stamp is not None and stamp != user.session_stamp):
        raise AuthenticationFailed(
            _("Your session has ended; please log in again"), code="session_expired"
        )
    return _actor_of(user, _roles_of(uow, user.id))


def current_session_stamp(uow: UnitOfWork, user_id: str) -> str:
    """The value to put in a new session of ``user_id`` (see ``actor_for_user``)."""
    user = uow.session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(_("No such user"))
    return user.session_stamp


# -- API clients (OAuth2 client credentials) -------------------------------------------


def _client_out(client: ApiClient) -> ApiClientOut:
    return ApiClientOut(
        id=client.id,
        client_id=client.client_id,
        name=client.name,
        org_id=client.org_id,
        org_path=client.org_path,
        scopes=tuple(client.scopes),
        created_at=client.created_at,
        revoked_at=client.revoked_at,
    )


def _parse_scopes(scopes: str | Iterable[str]) -> list[str]:
    """RFC 6749 §3.3: a space-delimited string; a list is accepted too."""
    items = scopes.split() if isinstance(scopes, str) else [s.strip() for s in scopes]
    return sorted({item for item in items if item})


def _unknown_scope(scope: str) -> ValidationError:
    return ValidationError(_("Unknown scope {scope}"), code="invalid_scope", scope=scope)


def create_api_client(
    uow: UnitOfWork, name: str, org_id: str, scopes: str | Iterable[str]
) -> CreatedApiClient:
    """Register an integration. The secret is returned once; only its hash is kept."""
    uow.actor.require("iam.clients.write")
    label = _clean_name(name, "name")
    granted = _parse_scopes(scopes)
    if not granted:
        raise ValidationError(_("An API client needs at least one scope"), code="invalid_scope")
    for scope in granted:
        if scope not in SCOPES:
            raise _unknown_scope(scope)
    if not covers(uow.actor.permissions, permissions_of_scopes(granted)):
        raise PermissionDenied(_("You cannot grant scopes beyond your own permissions"))
    unit = _visible_unit(uow, org_id)
    secret = "tss_" + crypto.random_token(32)
    client = ApiClient(
        id=new_id(),
        client_id="tsc_" + secrets.token_hex(12),
        name=label,
        org_id=unit.id,
        org_path=unit.path,
        secret_hash=crypto.hash_token(secret),
        scopes=granted,
        created_at=utcnow(),
    )
    uow.session.add(client)
    uow.flush()
    uow.audit(
        "iam.api_client.created",
        "api_client",
        client.id,
        {"client_id": client.client_id, "name": label, "org_path": unit.path, "scopes": granted},
    )
    return CreatedApiClient(_client_out(client), secret)


def issue_token(
    uow: UnitOfWork,
    client_id: str,
    client_secret: str,
    scopes: str | Iterable[str] | None = None,
) -> IssuedToken:
    """OAuth2 client-credentials grant (RFC 6749 §4.4): an opaque bearer token, stored
    only as its SHA-256, valid ``api_token_minutes``. Without ``scopes`` the token gets
    all of the client's scopes. Bad credentials → ``AuthenticationFailed`` code
    ``invalid_client`` (committed audit record); a scope the client lacks →
    ``ValidationError`` code ``invalid_scope``."""
    client = (
        uow.session.scalars(select(ApiClient).where(ApiClient.client_id == client_id)).first()
        if len(client_id) <= 64
        else None
    )
    valid = (
        client is not None
        and client.revoked_at is None
        and crypto.constant_time_equal(crypto.hash_token(client_secret), client.secret_hash)
    )
    if not valid:
        uow.audit(
            "iam.token.refused",
            "api_client",
            client.id if client is not None else "unknown",
            {"client_id": client_id[:64]},
        )
        _commit_and_raise(
            uow, AuthenticationFailed(_("Invalid client credentials"), code="invalid_client")
        )
    assert client is not None
    held = list(client.scopes)
    granted = held if scopes is None else _parse_scopes(scopes) or held
    for scope in granted:
        if scope not in SCOPES:
            raise _unknown_scope(scope)
        if scope not in held:
            raise ValidationError(
                _("The scope {scope} is not granted to this client"),
                code="invalid_scope",
                scope=scope,
            )
    now = utcnow()
    minutes = get_settings().api_token_minutes
    token = "tsat_" + crypto.random_token(32)
    # Housekeeping on the way: this client's expired tokens go, so the table stays small
    # without a background job.
    uow.session.execute(
        delete(ApiToken).where(ApiToken.client_pk == client.id, ApiToken.expires_at <= now)
    )
    uow.session.add(
        ApiToken(
            token_hash=crypto.hash_token(token),
            client_pk=client.id,
            scopes=granted,
            issued_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
    )
    uow.flush()
    uow.audit(
        "iam.token.issued",
        "api_client",
        client.id,
        {"client_id": client.client_id, "scopes": granted, "minutes": minutes},
    )
    return IssuedToken(token, minutes * 60, tuple(granted))


# Built once: every TMF request runs it, and building and hashing the statement again
# cost more than running it (SQLAlchemy memoises the cache key of a reused statement).
_TOKEN_LOOKUP = (
    select(
        ApiToken.scopes,
        ApiToken.expires_at,
        ApiClient.id,
        ApiClient.name,
        ApiClient.org_path,
        ApiClient.revoked_at,
    )
    .join(ApiClient, ApiClient.id == ApiToken.client_pk)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def actor_for_token(uow: UnitOfWork, token: str) -> Actor:
    """The actor behind a bearer token: one primary-key lookup of its SHA-256."""
    invalid = AuthenticationFailed(
        _("The access token is invalid or has expired"), code="invalid_token"
    )
    if not token or len(token) > 200:
        raise invalid
    # On the session's connection, as Core: no ORM result machinery for six columns.
    connection = uow.connection
    row = connection.execute(_TOKEN_LOOKUP, {"token_hash": crypto.hash_token(token)}).first()
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= utcnow():
        raise invalid
    return Actor(
        ActorKind.api_client,
        row.id,
        row.org_path,
        permissions_of_scopes(list(row.scopes)),
        row.name,
    )


def _visible_client(uow: UnitOfWork, client_id: str, *, lock: bool = False) -> ApiClient:
    query = select(ApiClient).where(ApiClient.client_id == client_id)
    client = uow.session.scalars(query.with_for_update() if lock else query).first()
    if client is None or not uow.actor.sees(client.org_path):
        raise NotFound(_("No such API client"))
    return client


def get_api_client(uow: UnitOfWork, client_id: str) -> ApiClientOut:
    uow.actor.require("iam.clients.read")
    return _client_out(_visible_client(uow, client_id))


def list_api_clients(uow: UnitOfWork, *, include_revoked: bool = False) -> list[ApiClientOut]:
    uow.actor.require("iam.clients.read")
    query = select(ApiClient).where(uow.actor.scope(ApiClient.org_path))
    if not include_revoked:
        query = query.where(ApiClient.revoked_at.is_(None))
    return [_client_out(c) for c in uow.session.scalars(query.order_by(ApiClient.name))]


def revoke_api_client(uow: UnitOfWork, client_id: str) -> None:
    """Revoke a client and every token it holds, effective on the next request."""
    uow.actor.require("iam.clients.write")
    client = _visible_client(uow, client_id, lock=True)
    if client.revoked_at is not None:
        raise Conflict(_("The API client {client_id} is already revoked"), client_id=client_id)
    client.revoked_at = utcnow()
    uow.session.execute(delete(ApiToken).where(ApiToken.client_pk == client.id))
    uow.flush()
    uow.audit("iam.api_client.revoked", "api_client", client.id, {"client_id": client_id})


def purge_expired_tokens(uow: UnitOfWork) -> int:
    """Delete every expired token (a periodic worker task); returns how many."""
    uow.actor.require("iam.clients.write")
    result = uow.session.execute(delete(ApiToken).where(ApiToken.expires_at <= utcnow()))
    return int(result.rowcount)  # type: ignore[attr-defined]


# -- staff users: lists for the console ------------------------------------------------

USER_STATUSES = ("active", "inactive", "locked")
USERS_PAGE_MAX = 200


def search_users(
    uow: UnitOfWork,
    *,
    org_id: str | None = None,
    role: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[StaffUserOut]:
    """One page of the users in the actor's subtree, by username: under ``org_id``,
    holding ``role``, and ``active`` / ``inactive`` / ``locked`` (a lockout still
    running). Filtered and paged in SQL, so a large operator's list stays cheap."""
    uow.actor.require("iam.users.read")
    if not 1 <= limit <= USERS_PAGE_MAX:
        raise ValidationError(_("limit must be between 1 and {maximum}"), maximum=USERS_PAGE_MAX)
    if offset < 0:
        raise ValidationError(_("offset must be zero or more"))
    query = select(StaffUser).where(uow.actor.scope(StaffUser.org_path))
    if org_id is not None:
        query = query.where(
            StaffUser.org_path.startswith(org_path_of(uow, org_id), autoescape=True)
        )
    if role is not None:
        if role not in ROLES:
            raise ValidationError(_("Unknown role {role}"), role=role[:32])
        holders = select(StaffUserRole.user_id).where(StaffUserRole.role == role)
        query = query.where(StaffUser.id.in_(holders))
    if status == "active":
        query = query.where(StaffUser.active.is_(True))
    elif status == "inactive":
        query = query.where(StaffUser.active.is_(False))
    elif status == "locked":
        query = query.where(StaffUser.locked_until > utcnow())
    elif status is not None:
        raise ValidationError(_("Unknown user status {status}"), status=status[:20])
    query = query.order_by(StaffUser.username).offset(offset).limit(limit)
    users = list(uow.session.scalars(query))
    roles = _roles_of_many(uow, [user.id for user in users])
    return [_user_out(user, roles[user.id]) for user in users]


def grantable_roles(actor: Actor) -> tuple[str, ...]:
    """The roles ``actor`` may grant (and so manage), in the order of ``ROLES`` — what a
    form offers; ``create_user`` and ``set_roles`` check the same rule."""
    found = []
    for role in ROLES:
        try:
            _require_grantable(actor, frozenset({role}))
        except PermissionDenied:
            continue
        found.append(role)
    return tuple(found)
