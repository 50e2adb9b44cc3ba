"""Permissions, default roles and API scopes, as data (DESIGN.md section 9).

A permission is ``<domain>.<verb>``; services check them with ``actor.require``. A role is
a named set of permissions; a staff user holds one or more roles and gets their union.
``admin`` holds ``*`` (everything, operator-wide); every other role is exercised inside
the user's own org subtree only.

Adding a permission: add it to ``PERMISSIONS`` with a one-line description, then to the
roles (and, if integrations need it, the API scopes) that should have it. A test checks
that every role and scope only names permissions listed here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

WILDCARD: Final = "*"

PERMISSIONS: Final[MappingProxyType[str, str]] = MappingProxyType(
    {
        # customers
        "customers.read": "See customers, accounts and contact media (masked)",
        "customers.write": "Register customers, change their data, open/close accounts",
        "customers.read_sensitive": "Reveal full ID numbers (audited)",
        # catalog (operator-wide)
        "catalog.read": "See product offerings and prices",
        "catalog.write": "Create, change and retire offerings (operator-wide)",
        # inventory (subscriptions)
        "inventory.read": "See subscriptions",
        "inventory.write": "Change subscriptions, add and lift credit / keep-number bars",
        "inventory.bars.lost": "Reopen a line reported lost (after checking the owner's ID)",
        "inventory.bars.admin": "Place and lift administrative bars",
        "inventory.bars.fraud": "Place and lift fraud bars",
        # numbers
        "numbers.read": "See the number pool",
        "numbers.reserve": "Reserve numbers for a customer",
        "numbers.assign": "Assign reserved numbers",
        "numbers.admin": "Manage number ranges, grades and quarantine",
        # orders, work orders, tickets
        "orders.read": "See service orders",
        "orders.write": "Take and change service orders",
        "workorders.read": "See work orders",
        "workorders.write": "Work, route and close work orders",
        "tickets.read": "See trouble tickets, complaints and interactions",
        "tickets.write": "Open, work and close tickets; record interactions",
        # billing and payments
        "billing.read": "See bills, usage and balances",
        "billing.write": "Adjust bills, run dunning, issue invoices",
        "payments.read": "See payments and the ledger",
        "payments.record": "Record payments and top-ups",
        "payments.reverse": "Reverse a payment",
        "payments.settle": "Settle held money (credit or refund)",
        "payments.reconcile": "Run and resolve reconciliations and daily closes",
        # loyalty
        "loyalty.read": "See points balances",
        "loyalty.write": "Redeem and adjust points",
        # notifications
        "notify.read": "See outbound SMS / email messages",
        # kiosk fleet
        "terminals.read": "See terminals, status and alarms",
        "terminals.write": "Register terminals and change their settings",
        "terminals.command": "Send remote commands to terminals",
        "terminals.collect": "Collect and refill cash boxes",
        # reports and audit
        "reports.read": "See dashboards and reports, export them",
        "audit.read": "Read the audit log",
        # platform operations
        "outbox.admin": "Inspect and retry outbox deliveries (operator-wide)",
        # iam
        "iam.orgs.read": "See the organisation tree",
        "iam.orgs.write": "Create organisation units",
        "iam.users.read": "See staff users",
        "iam.users.write": "Create and manage staff users",
        "iam.clients.read": "See API clients",
        "iam.clients.write": "Create and revoke API clients",
    }
)

# Permissions only an operator-wide actor may hold: the catalog is shared by every region,
# and the outbox serves the whole platform.
OPERATOR_WIDE: Final = frozenset({"catalog.write", "outbox.admin"})

_READ_ALL: Final = frozenset(p for p in PERMISSIONS if p.endswith(".read"))

ROLES: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {
        "admin": frozenset({WILDCARD}),
        # Everything inside the subtree, except what only the operator may do.
        "org_admin": frozenset(PERMISSIONS) - OPERATOR_WIDE,
        "agent": frozenset(
            {
                "customers.read",
                "customers.write",
                "customers.read_sensitive",
                "catalog.read",
                "inventory.read",
                "inventory.write",
                "inventory.bars.lost",
                "numbers.read",
                "numbers.reserve",
                "numbers.assign",
                "orders.read",
                "orders.write",
                "workorders.read",
                "tickets.read",
                "tickets.write",
                "billing.read",
                "payments.read",
                "loyalty.read",
                "loyalty.write",
                "iam.orgs.read",
            }
        ),
        "cashier": frozenset(
            {
                "customers.read",
                "catalog.read",
                "inventory.read",
                "billing.read",
                "payments.read",
                "payments.record",
                "payments.reverse",
                "iam.orgs.read",
            }
        ),
        "backoffice": frozenset(
            {
                "customers.read",
                "catalog.read",
                "inventory.read",
                "orders.read",
                "workorders.read",
                "workorders.write",
                "tickets.read",
                "iam.orgs.read",
            }
        ),
        "terminal_ops": frozenset(
            {
                "terminals.read",
                "terminals.write",
                "terminals.command",
                "terminals.collect",
                "payments.read",
                "notify.read",
                "iam.orgs.read",
            }
        ),
        "finance": frozenset(
            {
                "customers.read",
                "catalog.read",
                "billing.read",
                "billing.write",
                "payments.read",
                "payments.reverse",
                "payments.settle",
                "payments.reconcile",
                "terminals.read",
                "reports.read",
                "iam.orgs.read",
            }
        ),
        # Read-only: dashboards and the records behind them.
        "manager": frozenset(
            {
                "reports.read",
                "customers.read",
                "catalog.read",
                "inventory.read",
                "orders.read",
                "workorders.read",
                "tickets.read",
                "payments.read",
                "terminals.read",
                "iam.orgs.read",
                "iam.users.read",
            }
        ),
        # Read-only everywhere, plus the audit log; never full ID numbers.
        "auditor": _READ_ALL,
    }
)

# Roles whose holders must log in with a TOTP code (DESIGN.md section 9).
MFA_REQUIRED_ROLES: Final = frozenset({"admin", "org_admin", "finance", "auditor"})

# Roles that make a user operator-wide (their org path is the whole tree).
OPERATOR_WIDE_ROLES: Final = frozenset({"admin"})

# OAuth2 scopes an API client may hold, each mapped to the permissions it grants. A write
# scope implies the matching read. Staff-only powers (iam, audit, full ID numbers,
# number-pool administration, terminal commands) are deliberately not available to
# machines.
SCOPES: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {
        "customers.read": frozenset({"customers.read"}),
        "customers.write": frozenset({"customers.read", "customers.write"}),
        "catalog.read": frozenset({"catalog.read"}),
        # Operator-wide by nature: only an admin can grant it (``covers``), and the
        # catalog service lets a client below the root change only offerings sold
        # exclusively inside its own subtree.
        "catalog.write": frozenset({"catalog.read", "catalog.write"}),
        "inventory.read": frozenset({"inventory.read"}),
        "inventory.write": frozenset({"inventory.read", "inventory.write"}),
        "numbers.read": frozenset({"numbers.read"}),
        "numbers.reserve": frozenset({"numbers.read", "numbers.reserve", "numbers.assign"}),
        "orders.read": frozenset({"orders.read"}),
        "orders.write": frozenset({"orders.read", "orders.write"}),
        "workorders.read": frozenset({"workorders.read"}),
        "workorders.write": frozenset({"workorders.read", "workorders.write"}),
        "tickets.read": frozenset({"tickets.read"}),
        "tickets.write": frozenset({"tickets.read", "tickets.write"}),
        "billing.read": frozenset({"billing.read"}),
        "payments.read": frozenset({"payments.read"}),
        "payments.record": frozenset({"payments.read", "payments.record"}),
        "loyalty.read": frozenset({"loyalty.read"}),
        "notify.read": frozenset({"notify.read"}),
        "terminals.read": frozenset({"terminals.read"}),
        "reports.read": frozenset({"reports.read"}),
    }
)


def permissions_of_roles(roles: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    """The union of the permissions of ``roles`` (unknown names contribute nothing)."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)


def permissions_of_scopes(scopes: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    granted: set[str] = set()
    for scope in scopes:
        granted |= SCOPES.get(scope, frozenset())
    return frozenset(granted)


def covers(held: frozenset[str], wanted: frozenset[str]) -> bool:
    """Whether an actor holding ``held`` holds every permission in ``wanted`` — the rule
    for granting roles and scopes: nobody hands out a power they do not have."""
    if WILDCARD in held:
        return True
    return WILDCARD not in wanted and wanted <= held
