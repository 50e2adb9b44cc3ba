"""Who is acting: a staff member, an API client, a terminal, a customer or the system.

Every unit of work carries an actor. Services check permissions against it and scope
their queries to ``org_path``, the materialised path of the actor's organisation unit
(``/<root>/<province>/<city>/<hall>/``): a record is visible when its own org path starts
with the actor's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement

from teleserve.core.errors import NotFound, PermissionDenied
from teleserve.core.i18n import _


class ActorKind(StrEnum):
    staff = "staff"
    api_client = "api_client"
    terminal = "terminal"
    customer = "customer"
    system = "system"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    org_path: str = "/"
    permissions: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    # Operator-wide actors (the system, admins) see every organisation.

    def can(self, permission: str) -> bool:
        return "*" in self.permissions or permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise PermissionDenied(
                _("You do not have the permission {permission}"), permission=permission
            )

    def sees(self, org_path: str | None) -> bool:
        """Whether a record owned by ``org_path`` is inside this actor's subtree."""
        return org_path is not None and org_path.startswith(self.org_path)

    def require_visible(self, org_path: str | None, what: str = "record") -> None:
        """Out-of-scope records are reported exactly like missing ones (no existence leak)."""
        if not self.sees(org_path):
            raise NotFound(_("No such {what}"), what=what)

    def scope(self, column: Any) -> ColumnElement[bool]:
        """A WHERE clause keeping rows whose org path column is in this actor's subtree."""
        return column.startswith(self.org_path, autoescape=True)  # type: ignore[no-any-return]


SYSTEM = Actor(ActorKind.system, "system", "/", frozenset({"*"}), "system")
