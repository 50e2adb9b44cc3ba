from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teleserve.core.actor import ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.crypto import hash_token
from teleserve.core.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from teleserve.iam import service as iam
from teleserve.iam.models import ApiClient, ApiToken
from teleserve.iam.roles import ROLES

from .conftest import staff


@pytest.fixture
def client(make_uow, tree):
    with make_uow() as uow:
        created = iam.create_api_client(
            uow, "CRM 集成", tree["GZ"].id, "customers.write orders.read"
        )
        uow.commit()
    return created


def _issue(make_uow, client_id, secret, scopes=None):
    with make_uow() as uow:
        issued = iam.issue_token(uow, client_id, secret, scopes)
        uow.commit()
    return issued


def _actor(make_uow, token):
    with make_uow() as uow:
        return iam.actor_for_token(uow, token)


def test_client_secret_is_shown_once_and_stored_hashed(client, engine, tree):
    info, secret = client
    assert info.scopes == ("customers.write", "orders.read")
    assert info.org_path == tree["GZ"].path
    assert info.client_id.startswith("tsc_") and secret.startswith("tss_")
    assert len(secret) > 40
    with engine.connect() as conn:
        stored = conn.scalar(select(ApiClient.secret_hash).where(ApiClient.id == info.id))
    assert stored == hash_token(secret) and secret not in stored


def test_issue_and_verify_token(make_uow, client, tree, settings, frozen_clock, engine):
    info, secret = client
    issued = _issue(make_uow, info.client_id, secret)
    assert issued.expires_in == settings.api_token_minutes * 60
    assert issued.scopes == ("customers.write", "orders.read")
    actor = _actor(make_uow, issued.access_token)
    assert actor.kind is ActorKind.api_client and actor.id == info.id
    assert actor.org_path == tree["GZ"].path
    assert actor.permissions == {"customers.read", "customers.write", "orders.read"}
    assert actor.sees(tree["GZTH"].path) and not actor.sees(tree["SZ"].path)
    with engine.connect() as conn:
        stored = conn.scalar(select(ApiToken.token_hash))
    assert stored == hash_token(issued.access_token)


def test_token_with_fewer_scopes(make_uow, client):
    info, secret = client
    issued = _issue(make_uow, info.client_id, secret, ["orders.read"])
    assert issued.scopes == ("orders.read",)
    actor = _actor(make_uow, issued.access_token)
    assert actor.permissions == {"orders.read"}


def test_token_expires(make_uow, client, settings, frozen_clock):
    info, secret = client
    issued = _issue(make_uow, info.client_id, secret)
    frozen_clock.advance(minutes=settings.api_token_minutes, seconds=-1)
    assert _actor(make_uow, issued.access_token).id == info.id
    frozen_clock.advance(seconds=1)
    with pytest.raises(AuthenticationFailed) as failed:
        _actor(make_uow, issued.access_token)
    assert failed.value.code == "invalid_token"


@pytest.mark.parametrize("token", ["", "tsat_forged", "x" * 500])
def test_bad_tokens(make_uow, client, token):
    with pytest.raises(AuthenticationFailed):
        _actor(make_uow, token)


def test_wrong_secret_or_unknown_client(make_uow, client, engine):
    info, secret = client
    for client_id, given in (
        (info.client_id, secret + "x"),
        ("tsc_unknown", secret),
        (info.client_id, ""),
    ):
        with pytest.raises(AuthenticationFailed) as failed:
            _issue(make_uow, client_id, given)
        assert failed.value.code == "invalid_client"
    with engine.connect() as conn:
        refused = conn.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "iam.token.refused")
        )
        tokens = conn.scalar(select(func.count()).select_from(ApiToken))
    assert refused == 3 and tokens == 0


@pytest.mark.parametrize(
    "scopes", ["payments.record", ["no.such.scope"], "orders.read iam.users.write"]
)
def test_scope_not_granted_is_invalid_scope(make_uow, client, engine, scopes):
    info, secret = client
    with pytest.raises(ValidationError) as failed:
        _issue(make_uow, info.client_id, secret, scopes)
    assert failed.value.code == "invalid_scope"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_create_refuses_unknown_or_staff_only_scopes(make_uow, tree, engine):
    for scopes in ("customers.read bogus", "iam.users.write", "*", "audit.read", ""):
        with make_uow() as uow, pytest.raises(ValidationError) as failed:
            iam.create_api_client(uow, "x", tree["GZ"].id, scopes)
        assert failed.value.code == "invalid_scope"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ApiClient)) == 0


def test_create_is_scoped_and_cannot_exceed_the_creator(make_uow, tree):
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"])
    with make_uow(city_admin) as uow:
        with pytest.raises(NotFound):
            iam.create_api_client(uow, "x", tree["SZ"].id, "orders.read")
        assert iam.create_api_client(uow, "x", tree["GZTH"].id, "orders.read").client.name == "x"
    narrow = staff(tree["GZ"].path, "iam.clients.write", "orders.read")
    with make_uow(narrow) as uow, pytest.raises(PermissionDenied):
        iam.create_api_client(uow, "x", tree["GZ"].id, "orders.write")
    reader = staff(tree["GZ"].path, "iam.clients.read")
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        iam.create_api_client(uow, "x", tree["GZ"].id, "orders.read")


def test_list_and_get_are_scoped(make_uow, client, tree):
    info, _ = client
    with make_uow() as uow:
        iam.create_api_client(uow, "Shenzhen BI", tree["SZ"].id, "reports.read")
        uow.commit()
    gz = staff(tree["GZ"].path, "iam.clients.read")
    with make_uow(gz) as uow:
        assert [c.client_id for c in iam.list_api_clients(uow)] == [info.client_id]
        assert iam.get_api_client(uow, info.client_id).name == "CRM 集成"
    sz = staff(tree["SZ"].path, "iam.clients.read", "iam.clients.write")
    with make_uow(sz) as uow:
        with pytest.raises(NotFound):
            iam.get_api_client(uow, info.client_id)
        with pytest.raises(NotFound):
            iam.revoke_api_client(uow, info.client_id)


def test_revoke_kills_tokens_and_credentials(make_uow, client, engine):
    info, secret = client
    issued = _issue(make_uow, info.client_id, secret)
    with make_uow() as uow:
        iam.revoke_api_client(uow, info.client_id)
        uow.commit()
    with pytest.raises(AuthenticationFailed):
        _actor(make_uow, issued.access_token)
    with pytest.raises(AuthenticationFailed):
        _issue(make_uow, info.client_id, secret)
    with make_uow() as uow:
        with pytest.raises(Conflict):
            iam.revoke_api_client(uow, info.client_id)
        assert iam.list_api_clients(uow) == []
        assert iam.list_api_clients(uow, include_revoked=True)[0].revoked_at is not None


def test_expired_tokens_are_purged(make_uow, client, settings, frozen_clock, engine):
    info, secret = client
    _issue(make_uow, info.client_id, secret)
    _issue(make_uow, info.client_id, secret)
    frozen_clock.advance(minutes=settings.api_token_minutes + 1)
    live = _issue(make_uow, info.client_id, secret)  # removes this client's expired ones
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ApiToken)) == 1
    frozen_clock.advance(minutes=settings.api_token_minutes + 1)
    with make_uow() as uow:
        assert iam.purge_expired_tokens(uow) == 1
        uow.commit()
    with pytest.raises(AuthenticationFailed):
        _actor(make_uow, live.access_token)


def test_token_issue_is_audited_without_the_token(make_uow, client, engine):
    info, secret = client
    issued = _issue(make_uow, info.client_id, secret)
    with engine.connect() as conn:
        details = list(
            conn.scalars(select(AuditRecord.detail).where(AuditRecord.subject_id == info.id))
        )
    assert details
    assert all(issued.access_token not in d and secret not in d for d in details)
    with engine.connect() as conn:
        actions = set(
            conn.scalars(select(AuditRecord.action).where(AuditRecord.subject_id == info.id))
        )
    assert {"iam.api_client.created", "iam.token.issued"} <= actions


def test_over_long_client_id_matches_nobody(make_uow, client):
    info, secret = client
    with pytest.raises(AuthenticationFailed) as failed:
        _issue(make_uow, info.client_id + "x" * 64, secret)
    assert failed.value.code == "invalid_client"
