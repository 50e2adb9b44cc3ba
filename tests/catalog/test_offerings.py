from datetime import UTC, datetime
from decimal import Decimal

import pytest

from teleserve.catalog import service
from teleserve.catalog.schemas import OfferingSpec, OfferingStatus
from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from tests.catalog.helpers import (
    ANONYMOUS_CUSTOMER,
    CATALOG_ADMIN,
    SZ_WRITER,
    audit_actions,
    offerings,
    outbox,
    spec,
    standard_catalog,
)


@pytest.fixture
def catalog(make_uow):
    with make_uow(CATALOG_ADMIN) as uow:
        created = service.create_offerings_batch(uow, standard_catalog())
        uow.commit()
    return {o.code: o for o in created}


def test_create_and_read_back_exactly(make_uow, engine):
    with make_uow(CATALOG_ADMIN) as uow:
        created = service.create_offering(
            uow,
            spec(
                "p_5g_128",
                name_zh="5G畅享128元套餐",
                name_en="5G Enjoy 128",
                description_zh="含30GB流量",
                category="5G",
                monthly_fee=12800,
                one_time_fee=0,
                voice_rate="15",
                data_rate="2.929688",
                sms_rate=Decimal("0.1"),
                voice_minutes=500,
                data_mb=30720,
                sms_count=100,
                customer_categories=["individual"],
                account_types=["prepaid", "postpaid"],
                regions=["/T/GD/"],
            ),
        )
        uow.commit()
    assert created.code == "P_5G_128"  # codes are upper-case
    with make_uow(ANONYMOUS_CUSTOMER) as uow:
        by_code = service.get_offering(uow, "p_5g_128")
        by_id = service.get_offering(uow, created.id)
    assert by_code == by_id == created
    assert by_code.data_rate == Decimal("2.929688")
    assert by_code.sms_rate == Decimal("0.1")
    assert by_code.monthly_fee == 12800 and by_code.data_mb == 30720
    assert by_code.regions == ("/T/GD/",)
    assert by_code.name_zh == "5G畅享128元套餐"
    assert audit_actions(engine) == ["catalog.offering.created"]
    assert outbox(engine, "catalog.offering_changed")[0]["code"] == "P_5G_128"


def test_writing_needs_catalog_write(make_uow, engine):
    reader = Actor(ActorKind.staff, "agent", "/T/", frozenset({"catalog.read"}))
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        service.create_offering(uow, spec("P_X"))
    assert offerings(engine) == 0


def test_duplicate_codes_conflict(make_uow, engine, catalog):
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(Conflict) as exc:
        service.create_offering(uow, spec("p_basic"))
    assert "P_BASIC" in str(exc.value)
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(Conflict):
        service.create_offerings_batch(uow, [spec("P_NEW"), spec("P_NEW")])
    assert offerings(engine) == len(standard_catalog())


NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"code": "x"}, "Invalid offering code"),
        ({"code": "BAD CODE"}, "Invalid offering code"),
        ({"name_zh": "  "}, "Chinese and an English name"),
        ({"name_en": "x" * 201}, "too long"),
        ({"monthly_fee": -1}, "monthly_fee cannot be negative"),
        ({"monthly_fee": 12.5}, "Invalid value for monthly_fee"),
        ({"monthly_fee": "1200"}, "Invalid value for monthly_fee"),
        ({"data_mb": -5}, "data_mb cannot be negative"),
        ({"data_rate": "0.0000001"}, "at most 6 decimals"),
        ({"voice_rate": "-1"}, "non-negative rate"),
        ({"voice_rate": "Infinity"}, "voice_rate"),
        ({"regions": ["GD"]}, "Invalid organisation path"),
        ({"requires_plans": ["P_BASIC"]}, "Only a value-added service"),
        ({"kind": "tv"}, "Invalid value for kind"),
        ({"status": "gone"}, "Invalid value for status"),
        ({"customer_categories": ["alien"]}, "customer_categories"),
        ({"colour": "red"}, "Invalid value for colour"),
        ({"valid_from": NOW, "valid_to": NOW}, "after its start"),
        ({"valid_from": datetime(2026, 1, 1)}, "time zone"),
    ],
)
def test_bad_offerings_are_refused_and_nothing_written(make_uow, engine, fields, fragment):
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(ValidationError) as exc:
        service.create_offering(uow, {**spec("P_NEW"), **fields})
    assert fragment in str(exc.value)
    assert offerings(engine) == 0


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"requires_plans": ["P_NOPE"]}, "Unknown offering P_NOPE"),
        ({"requires_plans": ["VAS_CLIP"]}, "VAS_CLIP is not a base plan"),
        ({"excludes": ["P_BASIC"]}, "P_BASIC is not a value-added service"),
        ({"excludes": ["VAS_NEW"]}, "cannot exclude itself"),
    ],
)
def test_vas_references_must_exist_with_the_right_kind(make_uow, catalog, fields, fragment):
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(ValidationError) as exc:
        service.create_offering(uow, spec("VAS_NEW", "vas", **fields))
    assert fragment in str(exc.value)


def test_batch_may_refer_to_itself_and_is_all_or_nothing(make_uow, engine):
    batch = [
        spec("VAS_X", "vas", requires_plans=["P_A"], excludes=["VAS_Y"]),
        spec("VAS_Y", "vas"),
        spec("P_A"),
    ]
    with make_uow(CATALOG_ADMIN) as uow:
        assert [o.code for o in service.create_offerings_batch(uow, batch)] == [
            "VAS_X",
            "VAS_Y",
            "P_A",
        ]
        uow.commit()
    with make_uow(CATALOG_ADMIN) as uow, pytest.raises(ValidationError):
        service.create_offerings_batch(uow, [spec("P_OK"), spec("P_BAD", monthly_fee=-1)])
    assert offerings(engine) == 3


def test_accepts_spec_objects(make_uow):
    with make_uow(CATALOG_ADMIN) as uow:
        created = service.create_offering(
            uow, OfferingSpec(code="BB_1000", kind="broadband", name_zh="千兆", name_en="1000M")
        )
    assert created.status is OfferingStatus.draft


def test_drafts_are_hidden_from_the_public(make_uow, catalog):
    with make_uow(ANONYMOUS_CUSTOMER) as uow:
        with pytest.raises(NotFound) as exc:
            service.get_offering(uow, "P_DRAFT")
        assert "Unknown offering P_DRAFT" in str(exc.value)
        public = {o.code for o in service.list_offerings(uow)}
    assert "P_DRAFT" not in public and "P_BASIC" in public
    with make_uow(CATALOG_ADMIN) as uow:
        assert service.get_offering(uow, "P_DRAFT").status is OfferingStatus.draft
        assert [o.code for o in service.list_offerings(uow, status="draft")] == ["P_DRAFT"]


def test_unknown_offering_is_not_found(make_uow):
    with make_uow() as uow, pytest.raises(NotFound):
        service.get_offering(uow, "NOPE")
    with make_uow() as uow, pytest.raises(NotFound):
        service.get_offering(uow, "")


def test_list_filters(make_uow, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        vas = service.list_offerings(uow, kind="vas")
        assert [o.code for o in vas] == ["VAS_CLIP", "VAS_DATA", "VAS_RING_A", "VAS_RING_B"]
        sz = {o.code for o in service.list_offerings(uow, kind="plan", org_path="/T/GD/SZ/")}
        bj = {o.code for o in service.list_offerings(uow, kind="plan", org_path="/T/BJ/")}
        assert "P_GD" in sz and "P_GD" not in bj and "P_BASIC" in bj
        assert service.list_offerings(uow, kind="broadband", status="retired") == []
        with pytest.raises(ValidationError):
            service.list_offerings(uow, kind="tv")
        with pytest.raises(ValidationError):
            service.list_offerings(uow, org_path="no-slashes")


def test_lifecycle_transitions(make_uow, engine):
    with make_uow(CATALOG_ADMIN) as uow:
        new = service.create_offering(uow, spec("P_NEW", status="draft"))
        assert service.activate_offering(uow, "P_NEW").status is OfferingStatus.active
        with pytest.raises(Conflict):
            service.activate_offering(uow, "P_NEW")
        assert service.retire_offering(uow, "P_NEW", "replaced").status is OfferingStatus.retired
        with pytest.raises(Conflict):
            service.retire_offering(uow, "P_NEW")
        with pytest.raises(Conflict):
            service.activate_offering(uow, "P_NEW")
        # A draft may be withdrawn without ever being published.
        never = service.create_offering(uow, spec("P_NEVER", status="draft"))
        assert service.retire_offering(uow, "P_NEVER").status is OfferingStatus.retired
        uow.commit()
    assert audit_actions(engine, new.id) == [
        "catalog.offering.created",
        "catalog.offering.activated",
        "catalog.offering.retired",
    ]
    assert audit_actions(engine, never.id) == [
        "catalog.offering.created",
        "catalog.offering.retired",
    ]


def test_update_draft_changes_anything_but_code_and_kind(make_uow, engine):
    with make_uow(CATALOG_ADMIN) as uow:
        new = service.create_offering(uow, spec("P_NEW", status="draft", monthly_fee=1000))
        updated = service.update_offering(
            uow,
            "P_NEW",
            {"monthly_fee": 2000, "name_en": " New name ", "data_rate": "1.5", "valid_to": None},
        )
        assert updated.monthly_fee == 2000 and updated.name_en == "New name"
        assert updated.data_rate == Decimal("1.5")
        with pytest.raises(ValidationError):
            service.update_offering(uow, "P_NEW", {"code": "P_OTHER"})
        with pytest.raises(ValidationError):
            service.update_offering(uow, "P_NEW", {"kind": "vas"})
        with pytest.raises(ValidationError):
            service.update_offering(uow, "P_NEW", {"name_zh": None})
        with pytest.raises(ValidationError):
            service.update_offering(uow, "P_NEW", {"monthly_fee": -1})
        uow.commit()
    with make_uow(CATALOG_ADMIN) as uow:
        assert service.get_offering(uow, "P_NEW").monthly_fee == 2000
    assert audit_actions(engine, new.id) == [
        "catalog.offering.created",
        "catalog.offering.updated",
    ]


def test_active_offering_keeps_its_commercial_terms(make_uow, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        with pytest.raises(Conflict):
            service.update_offering(uow, "P_BASIC", {"monthly_fee": 1})
        with pytest.raises(Conflict):
            service.update_offering(uow, "P_BASIC", {"data_rate": "3"})
        # Same value is not a change; names and eligibility may change.
        same = service.update_offering(uow, "P_BASIC", {"monthly_fee": 3800})
        assert same.monthly_fee == 3800
        renamed = service.update_offering(
            uow, "P_BASIC", {"name_zh": "新名字", "regions": ["/T/GD/"]}
        )
        assert renamed.name_zh == "新名字" and renamed.regions == ("/T/GD/",)
        service.retire_offering(uow, "P_BASIC")
        with pytest.raises(Conflict):
            service.update_offering(uow, "P_BASIC", {"name_zh": "再改"})


def test_update_checks_references(make_uow, catalog):
    with make_uow(CATALOG_ADMIN) as uow:
        with pytest.raises(ValidationError):
            service.update_offering(uow, "VAS_CLIP", {"requires_plans": ["VAS_DATA"]})
        with pytest.raises(ValidationError):
            service.update_offering(uow, "P_PLUS", {"excludes": ["VAS_CLIP"]})
        assert service.update_offering(
            uow, "VAS_CLIP", {"requires_plans": ["p_basic", "P_PLUS"]}
        ).requires_plans == ("P_BASIC", "P_PLUS")


def test_regional_writer_manages_only_its_own_offerings(make_uow, engine, catalog):
    with make_uow(SZ_WRITER) as uow:
        local = service.create_offering(uow, spec("P_SZ", regions=["/T/GD/SZ/"]))
        assert local.regions == ("/T/GD/SZ/",)
        with pytest.raises(PermissionDenied):
            service.create_offering(uow, spec("P_ALL"))  # operator-wide
        with pytest.raises(PermissionDenied):
            service.create_offering(uow, spec("P_GZ", regions=["/T/GD/GZ/"]))
        with pytest.raises(PermissionDenied):
            service.update_offering(uow, "P_GD", {"name_en": "Mine"})
        with pytest.raises(PermissionDenied):
            service.update_offering(uow, "P_SZ", {"regions": ["/T/GD/"]})
        with pytest.raises(PermissionDenied):
            service.retire_offering(uow, "P_BASIC")
        assert service.retire_offering(uow, "P_SZ").status is OfferingStatus.retired


def test_system_actor_may_seed(make_uow):
    with make_uow(SYSTEM) as uow:
        created = service.create_offerings_batch(uow, standard_catalog())
    assert len(created) == len(standard_catalog())
