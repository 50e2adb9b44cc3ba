from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teleserve.core.actor import ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from teleserve.iam import passwords
from teleserve.iam import service as iam
from teleserve.iam.models import StaffUser, StaffUserRole
from teleserve.iam.roles import ROLES
from teleserve.iam.schemas import StaffUserSpec

from .conftest import PASSWORD, staff


def _count_users(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(StaffUser))


def test_create_user_stores_argon2id_hash_and_roles(make_uow, tree, engine):
    with make_uow() as uow:
        user = iam.create_user(
            uow, "  Alice.Wang ", "王丽", PASSWORD, tree["GZTH"].id, ["agent", "cashier"]
        )
        uow.commit()
    assert user.username == "alice.wang"
    assert user.org_path == tree["GZTH"].path
    assert user.roles == ("agent", "cashier")
    assert user.active and not user.mfa_enabled and not user.mfa_required
    with engine.connect() as conn:
        stored = conn.scalar(select(StaffUser.password_hash).where(StaffUser.id == user.id))
        roles = set(conn.scalars(select(StaffUserRole.role)))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert passwords.verify_password(stored, PASSWORD)
    assert roles == {"agent", "cashier"}


def test_user_out_never_carries_secrets(make_user):
    user = make_user("bob", "GZ", ["finance"])
    dumped = user.model_dump()
    assert not {"password_hash", "mfa_secret_enc", "session_stamp"} & set(dumped)
    assert user.mfa_required


def test_user_outside_actor_subtree_is_not_found(make_uow, tree, engine):
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"])
    before = _count_users(engine)
    with make_uow(city_admin) as uow:
        with pytest.raises(NotFound):
            iam.create_user(uow, "intruder", "X", PASSWORD, tree["SZ"].id, ["agent"])
        with pytest.raises(NotFound):
            iam.create_user(uow, "intruder", "X", PASSWORD, tree["GD"].id, ["agent"])
    assert _count_users(engine) == before
    with make_uow(city_admin) as uow:
        ok = iam.create_user(uow, "insider", "Y", PASSWORD, tree["GZTH-K1"].id, ["agent"])
        uow.commit()
    assert ok.org_path.startswith(tree["GZ"].path)


def test_reads_are_scoped(make_uow, make_user, tree):
    gz = make_user("gz-agent", "GZTH", ["agent"])
    sz = make_user("sz-agent", "SZ", ["agent"])
    reader = staff(tree["GZ"].path, "iam.users.read", "iam.orgs.read")
    with make_uow(reader) as uow:
        assert [u.username for u in iam.list_users(uow)] == ["gz-agent"]
        assert iam.get_user(uow, gz.id).username == "gz-agent"
        with pytest.raises(NotFound):
            iam.get_user(uow, sz.id)
        with pytest.raises(NotFound):
            iam.list_users(uow, org_id=tree["SZ"].id)
    with make_uow() as uow:
        assert [u.username for u in iam.list_users(uow, org_id=tree["SZ"].id)] == ["sz-agent"]
        assert len(iam.list_users(uow)) == 2


def test_anyone_reads_their_own_account(make_uow, make_user):
    user = make_user("carol", "GZ", ["agent"])
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, user.id)
    assert not actor.can("iam.users.read")
    with make_uow(actor) as uow:
        assert iam.get_user(uow, user.id).username == "carol"


@pytest.mark.parametrize(
    ("username", "password", "roles"),
    [
        ("ab", PASSWORD, ["agent"]),  # too short
        ("bad name", PASSWORD, ["agent"]),
        ("王五", PASSWORD, ["agent"]),
        ("dave", "short", ["agent"]),
        ("dave", "x" * 129, ["agent"]),
        ("dave", "aaaaaaaaaaaaaaa", ["agent"]),
        ("dave", "ababababababab", ["agent"]),
        ("dave", "my-dave-password", ["agent"]),
        ("dave", PASSWORD, []),
        ("dave", PASSWORD, ["superuser"]),
    ],
)
def test_bad_input_refused_and_nothing_written(make_uow, tree, engine, username, password, roles):
    before = _count_users(engine)
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_user(uow, username, "Dave", password, tree["GZ"].id, roles)
    assert _count_users(engine) == before


def test_duplicate_username_conflicts(make_uow, make_user, tree):
    make_user("erin", "GZ", ["agent"])
    with make_uow() as uow, pytest.raises(Conflict):
        iam.create_user(uow, "ERIN", "Erin", PASSWORD, tree["SZ"].id, ["agent"])


def test_no_privilege_escalation(make_uow, make_user, tree):
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"])
    with make_uow(city_admin) as uow, pytest.raises(PermissionDenied):
        iam.create_user(uow, "boss", "Boss", PASSWORD, tree["GZ"].id, ["admin"])
    admin_in_city = make_user("root-in-city", "GZ", ["admin"])
    with make_uow(city_admin) as uow:
        # visible (inside GZ) but holds a role the org admin cannot grant
        with pytest.raises(PermissionDenied):
            iam.set_password(uow, admin_in_city.id, "a brand new secret")
        with pytest.raises(PermissionDenied):
            iam.deactivate_user(uow, admin_in_city.id)
        with pytest.raises(PermissionDenied):
            iam.reset_mfa(uow, admin_in_city.id)
    agent = make_user("frank", "GZ", ["agent"])
    with make_uow(city_admin) as uow:
        with pytest.raises(PermissionDenied):
            iam.set_roles(uow, agent.id, ["admin"])
        assert iam.set_roles(uow, agent.id, ["agent", "finance"]).roles == ("agent", "finance")
    cashier_lead = staff(tree["GZ"].path, "iam.users.write", *ROLES["cashier"])
    with make_uow(cashier_lead) as uow, pytest.raises(PermissionDenied):
        iam.create_user(uow, "gina", "Gina", PASSWORD, tree["GZ"].id, ["agent"])
    no_write = staff(tree["GZ"].path, "iam.users.read")
    with make_uow(no_write) as uow, pytest.raises(PermissionDenied):
        iam.create_user(uow, "gina", "Gina", PASSWORD, tree["GZ"].id, ["agent"])


def test_batch_with_precomputed_hash(make_uow, tree, engine):
    shared = passwords.hash_password("demo password 2026")
    specs = [
        StaffUserSpec(
            username=f"agent{i:03d}",
            display_name=f"坐席{i}",
            org_id=tree["GZTH"].id,
            roles=("agent",),
        )
        for i in range(120)
    ] + [
        StaffUserSpec(
            username="fin",
            display_name="财务",
            org_id=tree["GD"].id,
            roles=("finance",),
            mfa_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        )
    ]
    with make_uow() as uow:
        users = iam.create_users_batch(uow, specs, password_hash=shared)
        uow.commit()
    assert len(users) == 121 and users[0].username == "agent000"
    assert users[-1].mfa_enabled
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(StaffUserRole)) == 121
        created = conn.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "iam.user.created")
        )
    assert created == 121
    with make_uow() as uow:
        actor = iam.authenticate(uow, "agent042", "demo password 2026")
        uow.commit()
    assert actor.can("customers.write")


@pytest.mark.parametrize(
    ("specs", "hash_", "error"),
    [
        ([("xx1", "GZ"), ("xx1", "GZ")], None, ValidationError),
        ([("xx1", "GZ"), ("batch-taken", "GZ")], None, Conflict),
        ([("xx1", "nowhere")], None, NotFound),
        ([("xx1", "GZ")], "plain-text", ValidationError),
        (
            [("xx1", "GZ")],
            "$2b$12$bcrypthashbcrypthashbcrypthashbcrypthashbcrypthashbcr",
            ValidationError,
        ),
    ],
)
def test_batch_validates_everything_before_writing(
    make_uow, make_user, tree, engine, specs, hash_, error
):
    make_user("batch-taken", "GZ", ["agent"])
    rows = [
        StaffUserSpec(
            username=name,
            display_name="N",
            org_id=tree[org].id if org in tree else org,
            roles=("agent",),
        )
        for name, org in specs
    ]
    before = _count_users(engine)
    with make_uow() as uow, pytest.raises(error):
        iam.create_users_batch(uow, rows, password_hash=hash_ or passwords.hash_password("p"))
    assert _count_users(engine) == before


def test_batch_refuses_bad_mfa_secret_and_foreign_org(make_uow, tree):
    shared = passwords.hash_password("demo password 2026")
    bad_secret = StaffUserSpec(
        username="mm1",
        display_name="M",
        org_id=tree["GZ"].id,
        roles=("admin",),
        mfa_secret="not base32!",
    )
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_users_batch(uow, [bad_secret], password_hash=shared)
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"])
    foreign = StaffUserSpec(
        username="mm2", display_name="M", org_id=tree["SZ"].id, roles=("agent",)
    )
    with make_uow(city_admin) as uow, pytest.raises(NotFound):
        iam.create_users_batch(uow, [foreign], password_hash=shared)


def test_actor_for_user_carries_scope_and_permissions(make_uow, make_user, tree):
    agent = make_user("hank", "GZTH", ["agent", "cashier"])
    admin = make_user("ivy", "GZ", ["admin"])
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, agent.id)
        admin_actor = iam.actor_for_user(uow, admin.id)
    assert actor.kind is ActorKind.staff and actor.id == agent.id
    assert actor.org_path == tree["GZTH"].path
    assert actor.permissions == ROLES["agent"] | ROLES["cashier"]
    assert actor.sees(tree["GZTH-K1"].path) and not actor.sees(tree["GZ"].path)
    # admin is operator-wide whatever unit it sits in; without MFA it may only enrol
    assert admin_actor.org_path == tree["GZ"].path and iam.is_enrolment_only(admin_actor)


def test_self_service_password_change(make_uow, make_user):
    user = make_user("jack", "GZ", ["agent"])
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, user.id)
        stamp = iam.current_session_stamp(uow, user.id)
    with make_uow(actor) as uow:
        with pytest.raises(ValidationError):
            iam.set_password(uow, user.id, "another long secret")
        with pytest.raises(AuthenticationFailed):
            iam.set_password(uow, user.id, "another long secret", current_password="wrong")
        with pytest.raises(ValidationError):
            iam.set_password(uow, user.id, "short", current_password=PASSWORD)
        iam.set_password(uow, user.id, "another long secret", current_password=PASSWORD)
        uow.commit()
    with make_uow() as uow, pytest.raises(AuthenticationFailed):
        iam.authenticate(uow, "jack", PASSWORD)
    with make_uow() as uow:
        assert iam.authenticate(uow, "jack", "another long secret").id == user.id
        # the old session is over
        with pytest.raises(AuthenticationFailed):
            iam.actor_for_user(uow, user.id, stamp=stamp)


def test_admin_reset_deactivate_reactivate(make_uow, make_user, tree, engine):
    user = make_user("kate", "GZTH", ["agent"])
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"], user_id="city-admin")
    with make_uow() as uow:
        stamp = iam.current_session_stamp(uow, user.id)
    with make_uow(city_admin) as uow:
        iam.set_password(uow, user.id, "reset by the admin 1")
        iam.deactivate_user(uow, user.id)
        with pytest.raises(Conflict):
            iam.deactivate_user(uow, user.id)
        uow.commit()
    with make_uow() as uow, pytest.raises(AuthenticationFailed) as failed:
        iam.authenticate(uow, "kate", "reset by the admin 1")
    assert failed.value.code == "invalid_credentials"
    with make_uow() as uow, pytest.raises(AuthenticationFailed):
        iam.actor_for_user(uow, user.id)
    with make_uow(city_admin) as uow:
        iam.reactivate_user(uow, user.id)
        uow.commit()
    with make_uow() as uow:
        assert iam.authenticate(uow, "kate", "reset by the admin 1").id == user.id
        uow.commit()
    with make_uow() as uow, pytest.raises(AuthenticationFailed):
        iam.actor_for_user(uow, user.id, stamp=stamp)
    with engine.connect() as conn:
        actions = set(
            conn.scalars(select(AuditRecord.action).where(AuditRecord.subject_id == user.id))
        )
    assert {
        "iam.user.created",
        "iam.user.password_set",
        "iam.user.deactivated",
        "iam.user.reactivated",
        "iam.login.succeeded",
        "iam.login.failed",
    } <= actions


def test_admins_cannot_manage_themselves_through_admin_paths(make_uow, make_user, tree):
    user = make_user("leo", "GZ", ["org_admin"])
    me = staff(tree["GZ"].path, *ROLES["org_admin"], user_id=user.id)
    with make_uow(me) as uow:
        with pytest.raises(PermissionDenied):
            iam.deactivate_user(uow, user.id)
        with pytest.raises(PermissionDenied):
            iam.set_roles(uow, user.id, ["org_admin", "agent"])
        with pytest.raises(PermissionDenied):
            iam.reset_mfa(uow, user.id)


def test_managing_out_of_subtree_user_is_not_found(make_uow, make_user, tree):
    other = make_user("mia", "SZ", ["agent"])
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"])
    with make_uow(city_admin) as uow:
        for call in (
            lambda: iam.set_password(uow, other.id, "whatever password"),
            lambda: iam.set_password(uow, other.id, "weak"),
            lambda: iam.deactivate_user(uow, other.id),
            lambda: iam.unlock_user(uow, other.id),
            lambda: iam.set_roles(uow, other.id, ["agent"]),
            lambda: iam.reset_mfa(uow, other.id),
        ):
            with pytest.raises(NotFound):
                call()


def test_set_roles_changes_permissions_and_ends_sessions(make_uow, make_user):
    user = make_user("ned", "GZ", ["agent"])
    with make_uow() as uow:
        stamp = iam.current_session_stamp(uow, user.id)
        iam.set_roles(uow, user.id, ["manager"])
        uow.commit()
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, user.id)
        with pytest.raises(AuthenticationFailed):
            iam.actor_for_user(uow, user.id, stamp=stamp)
    assert actor.can("reports.read") and not actor.can("customers.write")
