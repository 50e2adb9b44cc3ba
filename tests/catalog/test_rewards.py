import pytest

from teleserve.catalog import service
from teleserve.catalog.models import Reward
from teleserve.catalog.schemas import RewardGrant, RewardStatus
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from tests.catalog.helpers import (
    ANONYMOUS_CUSTOMER,
    CATALOG_ADMIN,
    audit_actions,
    count,
    spec,
    standard_catalog,
)


@pytest.fixture
def catalog(make_uow):
    with make_uow(CATALOG_ADMIN) as uow:
        service.create_offerings_batch(
            uow, [*standard_catalog(), spec("VAS_OLD", "vas", status="retired")]
        )
        uow.commit()


def data_pack(**fields):
    return {
        "code": "R_DATA_1G",
        "name_zh": "1GB流量包",
        "name_en": "1 GB data pack",
        "points_cost": 500,
        "grant": "offering",
        "offering_code": "vas_data",
        **fields,
    }


def bill_credit(**fields):
    return {
        "code": "R_CREDIT_10",
        "name_zh": "10元话费",
        "name_en": "CNY 10 bill credit",
        "points_cost": 1000,
        "grant": "bill_credit",
        "credit_amount": 1000,
        **fields,
    }


def test_create_read_list(make_uow, engine, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        pack = service.create_reward(uow, data_pack())
        credit = service.create_reward(uow, bill_credit())
        uow.commit()
    assert pack.offering_code == "VAS_DATA" and pack.grant is RewardGrant.offering
    assert credit.credit_amount == 1000 and credit.offering_code is None
    with make_uow(ANONYMOUS_CUSTOMER) as uow:
        assert service.get_reward(uow, "r_data_1g") == pack
        assert service.get_reward(uow, credit.id) == credit
        assert [r.code for r in service.list_rewards(uow)] == ["R_DATA_1G", "R_CREDIT_10"]
    assert audit_actions(engine, pack.id) == ["catalog.reward.created"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (data_pack(points_cost=0), "positive whole number"),
        (data_pack(points_cost=1.5), "Invalid value for points_cost"),
        (data_pack(offering_code=None), "needs the offering's code"),
        (data_pack(offering_code="P_BASIC"), "not a value-added service"),
        (data_pack(offering_code="VAS_NOPE"), "Unknown offering VAS_NOPE"),
        (data_pack(offering_code="VAS_OLD"), "has been retired"),
        (data_pack(credit_amount=100), "either an offering or a bill credit"),
        (bill_credit(credit_amount=0), "positive amount in fen"),
        (bill_credit(credit_amount=None), "positive amount in fen"),
        (bill_credit(offering_code="VAS_CLIP"), "either an offering or a bill credit"),
        (bill_credit(code="?"), "Invalid reward code"),
        (bill_credit(name_en=""), "Chinese and an English name"),
        (bill_credit(grant="cash"), "Invalid value for grant"),
    ],
)
def test_bad_rewards_are_refused(make_uow, engine, catalog, fields, fragment):
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(ValidationError) as exc:
        service.create_reward(uow, fields)
    assert fragment in str(exc.value)
    assert count(engine, Reward) == 0


def test_duplicate_and_permissions(make_uow, engine, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        service.create_reward(uow, bill_credit())
        with pytest.raises(Conflict):
            service.create_reward(uow, bill_credit(name_en="again"))
        uow.commit()
    agent = Actor(ActorKind.staff, "agent", "/T/", frozenset({"catalog.read"}))
    with make_uow(agent) as uow:
        with pytest.raises(PermissionDenied):
            service.create_reward(uow, data_pack())
        with pytest.raises(PermissionDenied):
            service.retire_reward(uow, "R_CREDIT_10")
    assert count(engine, Reward) == 1


def test_update_and_retire(make_uow, engine, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        reward = service.create_reward(uow, data_pack())
        cheaper = service.update_reward(uow, "R_DATA_1G", {"points_cost": 400})
        assert cheaper.points_cost == 400
        switched = service.update_reward(
            uow, reward.id, {"grant": "bill_credit", "offering_code": None, "credit_amount": 300}
        )
        assert switched.grant is RewardGrant.bill_credit and switched.credit_amount == 300
        with pytest.raises(ValidationError):
            service.update_reward(uow, reward.id, {"credit_amount": -3})
        with pytest.raises(ValidationError):
            service.update_reward(uow, reward.id, {"points_cost": None})
        with pytest.raises(ValidationError):
            service.update_reward(uow, reward.id, {"code": "R_OTHER"})
        assert service.retire_reward(uow, reward.id).status is RewardStatus.retired
        with pytest.raises(Conflict):
            service.retire_reward(uow, reward.id)
        with pytest.raises(Conflict):
            service.update_reward(uow, reward.id, {"points_cost": 10})
        assert service.list_rewards(uow, status="active") == []
        uow.commit()
    assert audit_actions(engine, reward.id) == [
        "catalog.reward.created",
        "catalog.reward.updated",
        "catalog.reward.updated",
        "catalog.reward.retired",
    ]


def test_unknown_reward(make_uow, catalog):
    with make_uow() as uow, pytest.raises(NotFound):
        service.get_reward(uow, "R_NOPE")
    with make_uow() as uow, pytest.raises(ValidationError):
        service.list_rewards(uow, status="lost")
