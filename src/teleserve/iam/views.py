"""Console pages of the iam domain: staff, the organisation tree and API clients.

Templates: ``src/teleserve/web/templates/iam/``. Everything goes through
``iam.service`` as the logged-in actor, so permissions and scoping are the service's: a
user, unit or API client outside the actor's subtree is ``NotFound`` there and the 404
page here; a refusal of a form (a role the actor may not grant, a taken username...) is
shown in that form with nothing changed. The pages only *hide* forms the actor cannot
use; the service is what refuses them.

An API client's secret is shown once, on the answer to the form that created it (sent
with ``Cache-Control: no-store``); only its hash is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import RedirectResponse, Response

from teleserve.core.errors import DomainError, NotFound, PermissionDenied, ValidationError
from teleserve.core.i18n import _
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.iam.roles import SCOPES, covers, permissions_of_scopes
from teleserve.iam.schemas import ApiClientOut, OrgLevel, OrgUnitOut, StaffUserOut
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, Cell, audit_export, export_response, require_format

router = APIRouter(prefix="/staff")

PAGE_SIZE = 25
EXPORT_MAX = 10_000
_FETCH = iam.USERS_PAGE_MAX
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

ROLE_LABELS = {
    "admin": _("Administrator (operator-wide)"),
    "org_admin": _("Organisation administrator"),
    "agent": _("Service agent"),
    "cashier": _("Cashier"),
    "backoffice": _("Back office"),
    "terminal_ops": _("Kiosk operations"),
    "finance": _("Finance"),
    "manager": _("Manager"),
    "auditor": _("Auditor"),
}
LEVEL_LABELS = {
    OrgLevel.operator: _("Operator"),
    OrgLevel.province: _("Province"),
    OrgLevel.city: _("City"),
    OrgLevel.hall: _("Hall"),
    OrgLevel.site: _("Kiosk site"),
}
STATUS_LABELS = {
    "active": _("Active"),
    "inactive": _("Inactive"),
    "locked": _("Locked"),
}
# What a successful action says on the page it returns to (``?done=``).
DONE = {
    "created": _("The user has been created."),
    "roles": _("The roles have been changed; the user's sessions have ended."),
    "deactivate": _("The user has been deactivated; their sessions have ended."),
    "reactivate": _("The user has been reactivated."),
    "unlock": _("The user has been unlocked."),
    "reset-mfa": _("The authenticator has been reset; the user enrols again at the next login."),
    "org": _("The organisation unit has been created."),
    "revoked": _("The API client has been revoked; its tokens no longer work."),
}
ACTIONS = ("deactivate", "reactivate", "unlock", "reset-mfa")


@dataclass(frozen=True)
class FormError:
    """A refusal shown inside the form that caused it."""

    form: str
    message: str
    params: dict[str, Any] = field(default_factory=dict)


def _refusal(form: str, exc: DomainError) -> FormError:
    return FormError(form, exc.message, dict(exc.params))


def _units(uow: UnitOfWork) -> list[OrgUnitOut]:
    """The units the actor sees, or none when it may not read the tree (forms and
    filters then offer nothing to choose from)."""
    try:
        return iam.list_org_units(uow)
    except PermissionDenied:
        return []


def _unit_name(unit: OrgUnitOut, locale: str) -> str:
    return unit.name_en if locale == "en" else unit.name_zh


def _status_of(user: StaffUserOut) -> str:
    if not user.active:
        return "inactive"
    return "locked" if user.locked_until is not None else "active"


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _base_context(page: ConsolePage, tab: str) -> dict[str, Any]:
    actor = page.actor
    return {
        "tab": tab,
        "tabs": [
            (key, route, label)
            for key, route, label, permission in (
                ("staff", "staff_list", _("Staff"), "iam.users.read"),
                ("orgs", "org_tree", _("Organisation structure"), "iam.orgs.read"),
                ("clients", "api_client_list", _("API clients"), "iam.clients.read"),
            )
            if actor.can(permission)
        ],
        "role_labels": ROLE_LABELS,
        "level_labels": {level.value: label for level, label in LEVEL_LABELS.items()},
        "status_labels": STATUS_LABELS,
        "formats": FORMATS,
        # Options of a unit select, indented by depth (an em space per level).
        "indent": lambda unit: "\u2003" * max(unit.path.count("/") - 2, 0),
        "done": DONE.get(page.request.query_params.get("done", "")),
    }


def _redirect(page: ConsolePage, route: str, done: str, **params: str) -> Response:
    url = str(page.request.url_for(route, **params).path) + f"?done={done}"
    return RedirectResponse(url, status_code=303)


# -- staff list ------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffFilters:
    org: str | None
    role: str | None
    status: str | None

    def query(self) -> str:
        values = {"org": self.org, "role": self.role, "status": self.status}
        return urlencode({k: v for k, v in values.items() if v})


def _filters(org: str, role: str, status: str) -> StaffFilters:
    return StaffFilters(_clean(org), _clean(role), _clean(status))


def _search(uow: UnitOfWork, f: StaffFilters, *, limit: int, offset: int) -> list[StaffUserOut]:
    return iam.search_users(
        uow, org_id=f.org, role=f.role, status=f.status, limit=limit, offset=offset
    )


@router.get("", name="staff_list")
def staff_list(
    page: ConsolePage = Depends(console_page),
    org: Annotated[str, Query(max_length=32)] = "",
    role: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    page.actor.require("iam.users.read")
    filters = _filters(org, role, status)
    users: list[StaffUserOut] = []
    error: FormError | None = None
    has_next = False
    with page.uow(readonly=True) as uow:
        units = _units(uow)
        try:
            found = _search(uow, filters, limit=PAGE_SIZE + 1, offset=(p - 1) * PAGE_SIZE)
            users = found[:PAGE_SIZE]
            has_next = len(found) > PAGE_SIZE
        except (ValidationError, NotFound) as exc:
            # A filter naming an unknown role or a unit outside the subtree: say so above
            # an empty list rather than leaving the page.
            error = _refusal("filters", exc)
    context = {
        **_base_context(page, "staff"),
        "users": users,
        "units": units,
        "unit_names": {u.id: _unit_name(u, page.locale) for u in units},
        "filters": filters,
        "statuses": iam.USER_STATUSES,
        "status_of": _status_of,
        "p": p,
        "has_next": has_next,
        "error": error,
        "can_write": page.actor.can("iam.users.write"),
    }
    return page.render("iam/staff_list.html", context)


def _staff_rows(page: ConsolePage, uow: UnitOfWork, f: StaffFilters) -> Iterator[list[Cell]]:
    zone = page.zone
    names = {u.id: f"{u.code} {_unit_name(u, page.locale)}" for u in _units(uow)}
    offset = 0
    while offset < EXPORT_MAX:
        batch = _search(uow, f, limit=_FETCH, offset=offset)
        for user in batch:
            yield [
                user.username,
                user.display_name,
                names.get(user.org_id, user.org_path),
                ", ".join(page.t(ROLE_LABELS.get(r, r)) for r in user.roles),
                page.t(STATUS_LABELS[_status_of(user)]),
                page.t(_("Yes") if user.mfa_enabled else _("No")),
                user.last_login_at.astimezone(zone).replace(tzinfo=None)
                if user.last_login_at
                else None,
                user.created_at.astimezone(zone).replace(tzinfo=None),
            ]
        if len(batch) < _FETCH:
            return
        offset += _FETCH


@router.get("/export/{fmt}", name="staff_export")
def staff_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    org: Annotated[str, Query(max_length=32)] = "",
    role: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require("iam.users.read")
    filters = _filters(org, role, status)
    with page.uow() as uow:
        rows = list(_staff_rows(page, uow, filters))[:EXPORT_MAX]
        criteria = {"org": filters.org, "role": filters.role, "status": filters.status}
        audit_export(uow, "staff", fmt, len(rows), criteria)
        uow.commit()
    headers = [
        page.t(_("Username")),
        page.t(_("Name")),
        page.t(_("Organisation unit")),
        page.t(_("Roles")),
        page.t(_("Status")),
        page.t(_("Authenticator")),
        page.t(_("Last login")),
        page.t(_("Created")),
    ]
    return export_response(fmt, "staff", headers, rows, sheet=page.t(_("Staff")))


# -- creating a user -------------------------------------------------------------------


def _new_user_page(
    page: ConsolePage,
    values: dict[str, Any],
    error: FormError | None = None,
    status_code: int = 200,
) -> Response:
    with page.uow(readonly=True) as uow:
        units = _units(uow)
    context = {
        **_base_context(page, "staff"),
        "units": units,
        "grantable": iam.grantable_roles(page.actor),
        "values": values,
        "error": error,
    }
    return page.render("iam/staff_new.html", context, status_code=status_code)


@router.get("/new", name="staff_new")
def staff_new(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require("iam.users.write")
    values = {"username": "", "display_name": "", "org_id": "", "roles": []}
    return _new_user_page(page, values)


@router.post("/new", name="staff_create")
def staff_create(
    page: ConsolePage = Depends(console_page),
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    org_id: Annotated[str, Form(max_length=32)] = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = [r[:32] for r in (roles or [])[: len(ROLE_LABELS) + 1]]
    # The password is never sent back into the form.
    values = {"username": username, "display_name": display_name, "org_id": org_id, "roles": chosen}
    try:
        with page.uow() as uow:
            user = iam.create_user(uow, username, display_name, password, org_id, chosen)
            uow.commit()
    except NotFound as exc:
        return _new_user_page(page, values, _refusal("create", exc), 422)
    except DomainError as exc:
        return _new_user_page(page, values, _refusal("create", exc), exc.status)
    return _redirect(page, "staff_detail", "created", user_id=user.id)


# -- the organisation tree -------------------------------------------------------------


@dataclass
class TreeNode:
    unit: OrgUnitOut
    children: list[TreeNode] = field(default_factory=list)


def build_tree(units: Sequence[OrgUnitOut]) -> list[TreeNode]:
    """The actor's units as a forest: its own unit(s) at the top, children by code.
    ``units`` come sorted by path, so a parent always precedes its children."""
    nodes: dict[str, TreeNode] = {}
    roots: list[TreeNode] = []
    for unit in units:
        node = TreeNode(unit)
        nodes[unit.id] = node
        parent = nodes.get(unit.parent_id) if unit.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots


def _child_levels() -> dict[str, list[str]]:
    """Which levels a unit of each level may hold (the service's rule, for the form)."""
    allowed = {
        OrgLevel.operator: [OrgLevel.province],
        OrgLevel.province: [OrgLevel.city],
        OrgLevel.city: [OrgLevel.hall, OrgLevel.site],
        OrgLevel.hall: [OrgLevel.site],
        OrgLevel.site: [],
    }
    return {level.value: [c.value for c in children] for level, children in allowed.items()}


def _tree_page(
    page: ConsolePage,
    values: dict[str, str] | None = None,
    error: FormError | None = None,
    status_code: int = 200,
) -> Response:
    page.actor.require("iam.orgs.read")
    with page.uow(readonly=True) as uow:
        units = iam.list_org_units(uow)
    child_levels = _child_levels()
    context = {
        **_base_context(page, "orgs"),
        "tree": build_tree(units),
        "count": len(units),
        "parents": [u for u in units if child_levels[u.level.value]],
        "levels": [level.value for level in OrgLevel if level is not OrgLevel.operator],
        "child_levels": child_levels,
        "can_write": page.actor.can("iam.orgs.write"),
        "values": values
        or {"parent_id": "", "level": "", "code": "", "name_zh": "", "name_en": ""},
        "error": error,
    }
    return page.render("iam/org_tree.html", context, status_code=status_code)


@router.get("/orgs", name="org_tree")
def org_tree(page: ConsolePage = Depends(console_page)) -> Response:
    return _tree_page(page)


@router.post("/orgs", name="org_create")
def org_create(
    page: ConsolePage = Depends(console_page),
    parent_id: Annotated[str, Form(max_length=32)] = "",
    level: Annotated[str, Form(max_length=20)] = "",
    code: Annotated[str, Form(max_length=40)] = "",
    name_zh: Annotated[str, Form(max_length=120)] = "",
    name_en: Annotated[str, Form(max_length=120)] = "",
) -> Response:
    values = {
        "parent_id": parent_id,
        "level": level,
        "code": code.strip(),
        "name_zh": name_zh,
        "name_en": name_en,
    }
    try:
        with page.uow() as uow:
            iam.create_org_unit(
                uow, code.strip(), name_zh, name_en, level, parent_id.strip() or None
            )
            uow.commit()
    except NotFound as exc:  # a parent outside the subtree: the form says "no such unit"
        return _tree_page(page, values, _refusal("create", exc), 422)
    except DomainError as exc:
        return _tree_page(page, values, _refusal("create", exc), exc.status)
    return _redirect(page, "org_tree", "org")


@router.get("/orgs/export/{fmt}", name="org_export")
def org_export(fmt: str, page: ConsolePage = Depends(console_page)) -> Response:
    require_format(fmt)
    page.actor.require("iam.orgs.read")
    with page.uow() as uow:
        units = iam.list_org_units(uow)
        codes = {u.id: u.code for u in units}
        rows: list[list[Cell]] = [
            [
                u.code,
                u.name_zh,
                u.name_en,
                page.t(LEVEL_LABELS[u.level]),
                codes.get(u.parent_id or "", ""),
                u.path,
            ]
            for u in units
        ]
        audit_export(uow, "org_units", fmt, len(rows), {})
        uow.commit()
    headers = [
        page.t(_("Code")),
        page.t(_("Chinese name")),
        page.t(_("English name")),
        page.t(_("Level")),
        page.t(_("Parent")),
        page.t(_("Path")),
    ]
    return export_response(
        fmt, "org-units", headers, rows, sheet=page.t(_("Organisation structure"))
    )


# -- API clients -----------------------------------------------------------------------


def grantable_scopes(page: ConsolePage) -> list[str]:
    """The scopes this actor may hand to a client (nobody grants beyond their own)."""
    return [s for s in SCOPES if covers(page.actor.permissions, permissions_of_scopes([s]))]


def _clients_page(
    page: ConsolePage,
    include_revoked: bool,
    values: dict[str, Any] | None = None,
    error: FormError | None = None,
    status_code: int = 200,
) -> Response:
    page.actor.require("iam.clients.read")
    with page.uow(readonly=True) as uow:
        clients = iam.list_api_clients(uow, include_revoked=include_revoked)
        units = _units(uow)
    context = {
        **_base_context(page, "clients"),
        "clients": clients,
        "include_revoked": include_revoked,
        "units": units,
        "unit_names": {u.id: f"{u.code} {_unit_name(u, page.locale)}" for u in units},
        "scopes": grantable_scopes(page),
        "can_write": page.actor.can("iam.clients.write"),
        "values": values or {"name": "", "org_id": "", "scopes": []},
        "error": error,
    }
    return page.render("iam/api_clients.html", context, status_code=status_code)


@router.get("/api-clients", name="api_client_list")
def api_client_list(
    page: ConsolePage = Depends(console_page),
    revoked: Annotated[str, Query(max_length=1)] = "",
) -> Response:
    return _clients_page(page, revoked == "1")


@router.post("/api-clients", name="api_client_create")
def api_client_create(
    page: ConsolePage = Depends(console_page),
    name: Annotated[str, Form(max_length=120)] = "",
    org_id: Annotated[str, Form(max_length=32)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = [s[:40] for s in (scopes or [])[: len(SCOPES) + 1]]
    values = {"name": name, "org_id": org_id, "scopes": chosen}
    try:
        with page.uow() as uow:
            created = iam.create_api_client(uow, name, org_id, chosen)
            uow.commit()
    except NotFound as exc:
        return _clients_page(page, False, values, _refusal("create", exc), 422)
    except DomainError as exc:
        return _clients_page(page, False, values, _refusal("create", exc), exc.status)
    context = {
        **_base_context(page, "clients"),
        "client": created.client,
        "secret": created.secret,
    }
    # The only time the secret exists outside its hash: never cached, never logged.
    return page.render("iam/api_client_created.html", context, status_code=201, headers=_NO_STORE)


@router.post("/api-clients/{client_id}/revoke", name="api_client_revoke")
def api_client_revoke(client_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    try:
        with page.uow() as uow:
            iam.revoke_api_client(uow, client_id[:64])
            uow.commit()
    except NotFound:
        raise
    except DomainError as exc:
        return _clients_page(page, True, None, _refusal("revoke:" + client_id, exc), exc.status)
    return _redirect(page, "api_client_list", "revoked")


def _client_rows(
    page: ConsolePage, clients: list[ApiClientOut], names: dict[str, str]
) -> list[list[Cell]]:
    zone = page.zone
    return [
        [
            c.client_id,
            c.name,
            names.get(c.org_id, c.org_path),
            " ".join(c.scopes),
            c.created_at.astimezone(zone).replace(tzinfo=None),
            c.revoked_at.astimezone(zone).replace(tzinfo=None) if c.revoked_at else None,
        ]
        for c in clients
    ]


@router.get("/api-clients/export/{fmt}", name="api_client_export")
def api_client_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    revoked: Annotated[str, Query(max_length=1)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require("iam.clients.read")
    with page.uow() as uow:
        clients = iam.list_api_clients(uow, include_revoked=revoked == "1")
        names = {u.id: f"{u.code} {_unit_name(u, page.locale)}" for u in _units(uow)}
        rows = _client_rows(page, clients, names)
        audit_export(uow, "api_clients", fmt, len(rows), {"revoked": revoked == "1"})
        uow.commit()
    headers = [
        page.t(_("Client ID")),
        page.t(_("Name")),
        page.t(_("Organisation unit")),
        page.t(_("Scopes")),
        page.t(_("Created")),
        page.t(_("Revoked")),
    ]
    return export_response(fmt, "api-clients", headers, rows, sheet=page.t(_("API clients")))


# -- one user ------------------------------------------------------------------------
# Last: ``/{user_id}`` would otherwise catch ``/orgs`` and ``/api-clients``.


def _detail_page(
    page: ConsolePage, user_id: str, error: FormError | None = None, status_code: int = 200
) -> Response:
    with page.uow(readonly=True) as uow:
        user = iam.get_user(uow, user_id)
        units = _units(uow)
    grantable = iam.grantable_roles(page.actor)
    is_self = page.actor.id == user.id
    # Forms are offered to those the service would let through; it checks again anyway.
    manageable = (
        page.actor.can("iam.users.write") and not is_self and set(user.roles) <= set(grantable)
    )
    org = next((u for u in units if u.id == user.org_id), None)
    context = {
        **_base_context(page, "staff"),
        "user": user,
        "status": _status_of(user),
        "org_name": f"{org.code} {_unit_name(org, page.locale)}" if org else user.org_path,
        "grantable": grantable,
        "manageable": manageable,
        "can_write": page.actor.can("iam.users.write"),
        "is_self": is_self,
        "error": error,
    }
    return page.render("iam/staff_detail.html", context, status_code=status_code)


@router.get("/{user_id}", name="staff_detail")
def staff_detail(user_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    return _detail_page(page, user_id[:32])


@router.post("/{user_id}/roles", name="staff_roles")
def staff_roles(
    user_id: str,
    page: ConsolePage = Depends(console_page),
    roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = [r[:32] for r in (roles or [])[: len(ROLE_LABELS) + 1]]
    try:
        with page.uow() as uow:
            iam.set_roles(uow, user_id[:32], chosen)
            uow.commit()
    except NotFound:
        raise
    except DomainError as exc:
        return _detail_page(page, user_id[:32], _refusal("roles", exc), exc.status)
    return _redirect(page, "staff_detail", "roles", user_id=user_id)


@router.post("/{user_id}/{action}", name="staff_action")
def staff_action(user_id: str, action: str, page: ConsolePage = Depends(console_page)) -> Response:
    """Deactivate, reactivate, unlock or reset the authenticator of a user."""
    operations = {
        "deactivate": iam.deactivate_user,
        "reactivate": iam.reactivate_user,
        "unlock": iam.unlock_user,
        "reset-mfa": iam.reset_mfa,
    }
    operation = operations.get(action)
    if operation is None:
        raise NotFound(_("No such page"))
    try:
        with page.uow() as uow:
            operation(uow, user_id[:32])
            uow.commit()
    except NotFound:
        raise
    except DomainError as exc:
        return _detail_page(page, user_id[:32], _refusal(action, exc), exc.status)
    return _redirect(page, "staff_detail", action, user_id=user_id)
