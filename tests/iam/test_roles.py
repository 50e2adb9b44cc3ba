from __future__ import annotations

import pytest

from teleserve.iam.roles import (
    MFA_REQUIRED_ROLES,
    OPERATOR_WIDE,
    PERMISSIONS,
    ROLES,
    SCOPES,
    WILDCARD,
    covers,
    permissions_of_roles,
    permissions_of_scopes,
)


def test_the_default_roles_of_the_design_exist():
    assert set(ROLES) == {
        "admin",
        "org_admin",
        "agent",
        "cashier",
        "backoffice",
        "terminal_ops",
        "finance",
        "manager",
        "auditor",
    }
    assert {"admin", "org_admin", "finance", "auditor"} == MFA_REQUIRED_ROLES


def test_roles_and_scopes_only_name_known_permissions():
    for role, granted in ROLES.items():
        assert granted, role
        assert granted <= set(PERMISSIONS) | {WILDCARD}, role
    for scope, granted in SCOPES.items():
        assert granted <= set(PERMISSIONS), scope
        assert scope in granted  # a scope grants at least the permission it is named after


def test_admin_is_everything():
    assert ROLES["admin"] == {WILDCARD}
    assert covers(ROLES["admin"], frozenset(PERMISSIONS) | {WILDCARD})


def test_org_admin_is_everything_but_operator_wide_powers():
    assert ROLES["org_admin"] == set(PERMISSIONS) - OPERATOR_WIDE
    assert "catalog.write" not in ROLES["org_admin"]
    assert "outbox.admin" not in ROLES["org_admin"]
    assert {"inventory.bars.admin", "inventory.bars.fraud"} <= ROLES["org_admin"]
    for role in set(ROLES) - {"admin"}:
        assert covers(ROLES["org_admin"], ROLES[role]), role
    assert not covers(ROLES["org_admin"], ROLES["admin"])


# (role, permissions it must have, permissions it must not have)
EXPECTATIONS = [
    (
        "agent",
        {
            "customers.read",
            "customers.write",
            "customers.read_sensitive",
            "numbers.reserve",
            "orders.write",
            "tickets.write",
            "inventory.write",
            "inventory.bars.lost",
        },
        {
            "payments.record",
            "payments.settle",
            "catalog.write",
            "iam.users.write",
            "audit.read",
            "numbers.admin",
            "inventory.bars.admin",
            "inventory.bars.fraud",
            "outbox.admin",
        },
    ),
    (
        "cashier",
        {"payments.record", "payments.reverse", "payments.read", "customers.read"},
        {"payments.settle", "customers.write", "customers.read_sensitive", "iam.users.write"},
    ),
    (
        "backoffice",
        {"workorders.read", "workorders.write", "orders.read"},
        {"orders.write", "payments.record", "customers.write"},
    ),
    (
        "terminal_ops",
        {"terminals.read", "terminals.write", "terminals.command", "terminals.collect"},
        {"payments.record", "customers.read", "iam.users.write"},
    ),
    (
        "finance",
        {
            "payments.settle",
            "payments.reverse",
            "payments.reconcile",
            "reports.read",
            "billing.write",
        },
        {"payments.record", "customers.write", "iam.users.write", "terminals.command"},
    ),
    (
        "manager",
        {"reports.read", "customers.read", "orders.read"},
        {"customers.write", "payments.record", "payments.settle", "orders.write"},
    ),
    (
        "auditor",
        {"audit.read", "customers.read", "payments.read", "iam.users.read"},
        {"customers.read_sensitive", "customers.write", "payments.record", "iam.users.write"},
    ),
]


@pytest.mark.parametrize(("role", "has", "lacks"), EXPECTATIONS)
def test_role_permissions(role, has, lacks):
    assert has <= ROLES[role]
    assert not lacks & ROLES[role]


def test_manager_and_auditor_are_read_only():
    for role in ("manager", "auditor"):
        writes = {p for p in ROLES[role] if not p.endswith(".read")}
        assert writes == set(), role


def test_permission_unions():
    assert permissions_of_roles(["agent", "cashier"]) == ROLES["agent"] | ROLES["cashier"]
    assert permissions_of_roles([]) == frozenset()
    assert permissions_of_scopes(["customers.write"]) == {"customers.read", "customers.write"}


def test_scopes_never_grant_staff_only_powers():
    granted = permissions_of_scopes(list(SCOPES))
    assert WILDCARD not in granted
    assert not {p for p in granted if p.startswith(("iam.", "audit."))}
    assert "customers.read_sensitive" not in granted


def test_covers():
    assert covers(frozenset({"a", "b"}), frozenset({"a"}))
    assert not covers(frozenset({"a"}), frozenset({"a", "b"}))
    assert not covers(frozenset({"a"}), frozenset({WILDCARD}))
    assert covers(frozenset({WILDCARD}), frozenset({WILDCARD}))
