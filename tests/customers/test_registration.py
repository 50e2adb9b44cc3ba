import pytest
from sqlalchemy import func, select

from teleserve.core import crypto
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord, verify
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.sequences import RecordSequence
from teleserve.customers import service
from teleserve.customers.models import (
    ContactMedium,
    Customer,
    IdentityDocument,
    Individual,
    Organization,
)
from teleserve.customers.schemas import AccountSpec, CustomerRegistration, ServiceNumberSpec

from .conftest import GZ, GZ_AGENT, GZ_AUDITOR, GZ_HALL, KIOSK, PASSWORD, SZ, SZ_AGENT, make_id

ORG_CODE = "91350100M000100Y43"


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


def _register_zhang(uow, **overrides):
    values = dict(
        name="张三",
        id_number=make_id(),
        org_unit_id="GZ01",
        org_path=GZ_HALL,
        mobile="+86 138 0013 8000",
        email="zhangsan@example.com",
        address="广州市天河区天河路 1 号",
    )
    values.update(overrides)
    return service.register_individual(uow, **values)


def test_register_an_individual_shows_only_masked_data(make_uow, engine):
    id_number = make_id()
    with make_uow(GZ_AGENT) as uow:
        detail = _register_zhang(uow, id_number=id_number)
        uow.commit()
    assert detail.number.startswith("C") and len(detail.number) == 15
    assert detail.name == "张*"
    assert detail.gender == "male"
    assert detail.category == "individual" and detail.status == "active"
    assert [d.number_masked for d in detail.documents] == [
        id_number[:6] + "********" + id_number[-4:]
    ]
    assert {c.kind: c.value for c in detail.contacts} == {
        "mobile": "138****8000",
        "email": "z***@example.com",
        "address": "广州市天河区天河路 1 号",
    }
    with engine.connect() as conn:
        stored = conn.execute(select(IdentityDocument)).one()
        born = conn.scalar(select(Individual.birth_date))
    # Encrypted at rest, found by its blind index, decrypted only by the key holder.
    assert id_number not in stored.number_encrypted
    assert crypto.decrypt(stored.number_encrypted, "id_number") == id_number
    assert stored.number_index == crypto.blind_index(id_number, "id_number")
    assert str(born) == "1990-03-07"


def test_register_an_organization(make_uow):
    with make_uow(GZ_AGENT) as uow:
        detail = service.register_organization(
            uow,
            name="广州某某科技有限公司",
            credit_code=ORG_CODE.lower(),
            org_unit_id="GZ",
            org_path=GZ,
            accounts=[AccountSpec(kind="postpaid", credit_limit=500_00)],
        )
        uow.commit()
    assert detail.name == "广州某某科技有限公司"  # organisations are not masked
    assert detail.category == "organisation"
    assert detail.credit_code == ORG_CODE
    assert [(a.kind, a.credit_limit) for a in detail.accounts] == [("postpaid", 50000)]
    with make_uow(GZ_AGENT) as uow, pytest.raises(Conflict):
        service.register_organization(
            uow, name="Another", credit_code=ORG_CODE, org_unit_id="GZ", org_path=GZ
        )


def test_bad_input_changes_nothing(make_uow, engine):
    bad_calls = [
        dict(id_number=make_id()[:17] + "0" if make_id()[17] != "0" else make_id()[:17] + "1"),
        dict(id_number="440106900307123"),
        dict(mobile="12345678901"),
        dict(email="nobody@"),
        dict(name="  "),
        dict(gender="male", id_number=make_id(seq="124")),  # the ID says female
        dict(org_path="/TS/GD/GZ"),
        dict(id_type="library_card"),
        dict(accounts=[AccountSpec(kind="prepaid", credit_limit=100)]),
        dict(accounts=[AccountSpec(kind="postpaid", bill_cycle_day=29)]),
    ]
    for overrides in bad_calls:
        with make_uow(GZ_AGENT) as uow:
            with pytest.raises(ValidationError):
                _register_zhang(uow, **overrides)
            uow.commit()  # even a caller that commits anyway writes nothing
    for model in (Customer, Individual, IdentityDocument, ContactMedium, RecordSequence):
        assert _count(engine, model) == 0, model
    assert _count(engine, AuditRecord) == 0


def test_duplicate_identity_document_is_a_conflict(make_uow):
    with make_uow(GZ_AGENT) as uow:
        _register_zhang(uow)
        uow.commit()
    with make_uow(SZ_AGENT) as uow, pytest.raises(Conflict) as caught:
        _register_zhang(uow, org_path=SZ, name="李四")
    assert caught.value.code == "id_number_taken"


def test_registration_is_limited_to_the_actor_subtree(make_uow):
    with make_uow(SZ_AGENT) as uow, pytest.raises(PermissionDenied):
        _register_zhang(uow)
    reader = Actor(ActorKind.staff, "r", GZ, frozenset({"customers.read"}))
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        _register_zhang(uow)


def test_reads_are_scoped_to_the_organisation_subtree(make_uow):
    with make_uow(GZ_AGENT) as uow:
        customer = _register_zhang(uow)
        uow.commit()
    with make_uow(SZ_AGENT) as uow:
        with pytest.raises(NotFound) as outside:
            service.get_customer(uow, customer.id)
        assert service.search_customers(uow, name="张") == []
        with pytest.raises(NotFound) as missing:
            service.get_customer(uow, "0" * 32)
    # Outside the subtree looks exactly like missing.
    assert (outside.value.code, str(outside.value)) == (missing.value.code, str(missing.value))
    hall = Actor(ActorKind.staff, "h", "/TS/GD/GZ/GZ02/", frozenset({"customers.read"}))
    with make_uow(hall) as uow, pytest.raises(NotFound):
        service.get_customer(uow, customer.id)
    with make_uow(GZ_AGENT) as uow:
        assert service.get_customer(uow, customer.id).id == customer.id
    with make_uow(KIOSK) as uow, pytest.raises(PermissionDenied):
        service.get_customer(uow, customer.id)


def test_search_by_name_prefix_id_number_and_service_number(make_uow):
    with make_uow(GZ_AGENT) as uow:
        zhang = _register_zhang(uow)
        li = _register_zhang(uow, name="李四", id_number=make_id(seq="135"), mobile="13900139000")
        percent = _register_zhang(uow, name="张%", id_number=make_id(seq="137"), mobile=None)
        service.link_service_number(uow, "02088889999", li.id, GZ_HALL)
        uow.commit()
    with make_uow(GZ_AGENT) as uow:
        assert {c.id for c in service.search_customers(uow, name="张")} == {zhang.id, percent.id}
        # LIKE wildcards in the input are literal.
        assert [c.id for c in service.search_customers(uow, name="张%")] == [percent.id]
        assert [c.id for c in service.search_customers(uow, id_number=make_id())] == [zhang.id]
        lowercase_x = make_id(seq="135").lower()
        assert [c.id for c in service.search_customers(uow, id_number=lowercase_x)] == [li.id]
        assert [c.id for c in service.search_customers(uow, service_number="13900139000")] == [
            li.id
        ]
        assert [c.id for c in service.search_customers(uow, service_number="02088889999")] == [
            li.id
        ]
        assert service.search_customers(uow, name="张", service_number="13900139000") == []
        assert service.search_customers(uow, id_number=make_id(seq="999")) == []
        with pytest.raises(ValidationError):
            service.search_customers(uow)
        with pytest.raises(ValidationError):
            service.search_customers(uow, name="张", limit=0)


def test_reveal_id_number_needs_the_permission_and_is_audited(make_uow, engine, settings):
    id_number = make_id()
    with make_uow(GZ_AGENT) as uow:
        customer = _register_zhang(uow, id_number=id_number)
        uow.commit()
    with make_uow(GZ_AGENT) as uow, pytest.raises(PermissionDenied):
        service.reveal_id_number(uow, customer.id)
    sz_sensitive = Actor(ActorKind.staff, "s", SZ, frozenset({"customers.read_sensitive"}))
    with make_uow(sz_sensitive) as uow, pytest.raises(NotFound):
        service.reveal_id_number(uow, customer.id)
    with make_uow(GZ_AUDITOR, readonly=True) as uow, pytest.raises(RuntimeError):
        service.reveal_id_number(uow, customer.id)
    with make_uow(GZ_AUDITOR) as uow:
        assert service.reveal_id_number(uow, customer.id) == id_number
        uow.commit()
    with engine.connect() as conn:
        record = conn.execute(
            select(AuditRecord).where(AuditRecord.action == "customer.id_number_revealed")
        ).one()
    assert record.actor_id == GZ_AUDITOR.id and record.subject_id == customer.id
    assert id_number not in record.detail and "********" in record.detail
    assert verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file).ok


def test_batch_registration(make_uow, engine):
    password_hash = service.hash_service_password(PASSWORD)
    rows = [
        CustomerRegistration(
            category="individual",
            name=f"王{i}",
            org_unit_id="GZ01",
            org_path=GZ_HALL,
            id_number=make_id(seq=f"{i:03d}"),
            mobile=f"1380200{i:04d}",
            accounts=(AccountSpec(),),
            service_numbers=(
                ServiceNumberSpec(service_number=f"1380200{i:04d}", password_hash=password_hash),
            ),
        )
        for i in range(300)
    ]
    rows.append(
        CustomerRegistration(
            category="organisation",
            name="某某公司",
            org_unit_id="GZ",
            org_path=GZ,
            credit_code=ORG_CODE,
            accounts=(AccountSpec(kind="postpaid", credit_limit=1000),),
        )
    )
    with make_uow(GZ_AGENT) as uow:
        done = service.register_customers_batch(uow, rows)
        uow.commit()
    assert len(done) == 301 and len({d.number for d in done}) == 301
    assert all(len(d.account_ids) == 1 for d in done)
    # Each person's card index is the stored document's blind index (what numbers.assign
    # takes for the real-name rule); an organisation has none.
    assert done[7].id_index == crypto.blind_index(make_id(seq="007"), "id_number")
    assert done[-1].id_index is None
    with engine.connect() as conn:
        stored = conn.scalar(
            select(IdentityDocument.number_index).where(
                IdentityDocument.customer_id == done[7].customer_id
            )
        )
    assert stored == done[7].id_index
    assert _count(engine, Customer) == 301 and _count(engine, Organization) == 1
    # The precomputed hash works for logging in.
    with make_uow(KIOSK) as uow:
        token = service.login_with_password(uow, "13802000042", PASSWORD)
        assert token.customer_id == done[42].customer_id


def test_a_bad_row_refuses_the_whole_batch(make_uow, engine):
    good = CustomerRegistration(
        category="individual",
        name="王五",
        org_unit_id="GZ01",
        org_path=GZ_HALL,
        id_number=make_id(),
    )
    bad = good.model_copy(update={"id_number": make_id(seq="111"), "mobile": "10086"})
    with make_uow(GZ_AGENT) as uow, pytest.raises(ValidationError) as caught:
        service.register_customers_batch(uow, [good, bad])
    assert caught.value.params["row"] == 1
    twin = good.model_copy(update={"name": "王六"})
    with make_uow(GZ_AGENT) as uow, pytest.raises(Conflict):
        service.register_customers_batch(uow, [good, twin])
    hashless = good.model_copy(
        update={
            "service_numbers": (
                ServiceNumberSpec(service_number="13800138000", password_hash="plain"),
            )
        }
    )
    with make_uow(GZ_AGENT) as uow, pytest.raises(ValidationError):
        service.register_customers_batch(uow, [hashless])
    assert _count(engine, Customer) == 0


def test_rows_refused_by_the_database_leave_nothing_behind(make_uow, engine):
    first = CustomerRegistration(
        category="individual",
        name="王五",
        org_unit_id="GZ01",
        org_path=GZ_HALL,
        id_number=make_id(),
        service_numbers=(ServiceNumberSpec(service_number="13800138000"),),
    )
    with make_uow(GZ_AGENT) as uow:
        service.register_customers_batch(uow, [first])
        uow.commit()
    same_number = first.model_copy(update={"id_number": make_id(seq="111")})
    same_document = first.model_copy(update={"service_numbers": ()})
    for row, code in ((same_number, "service_number_taken"), (same_document, "id_number_taken")):
        with make_uow(GZ_AGENT) as uow:
            with pytest.raises(Conflict) as caught:
                service.register_customers_batch(uow, [row])
            assert caught.value.code == code
            uow.commit()  # the savepoint is gone: committing writes nothing
    assert _count(engine, Customer) == 1 and _count(engine, IdentityDocument) == 1
    with engine.connect() as conn:
        assert conn.scalar(select(RecordSequence.value)) == 1  # no number consumed


def test_search_normalises_its_input(make_uow):
    with make_uow(GZ_AGENT) as uow:
        zhang = _register_zhang(uow)
        traveller = service.register_individual(
            uow,
            name="John Smith",
            id_type="passport",
            id_number="E1234 5678",
            org_unit_id="GZ01",
            org_path=GZ_HALL,
        )
        uow.commit()
    assert traveller.name == "J***" and traveller.gender is None
    with make_uow(GZ_AGENT) as uow:
        with pytest.raises(ValidationError):
            service.search_customers(uow, name="   ")  # blank is no criterion, not "all"
        assert [c.id for c in service.search_customers(uow, name=" 张 ")] == [zhang.id]
        for typed in ("e12345678", "E1234-5678", "Ｅ１２３４５６７８"):
            assert [c.id for c in service.search_customers(uow, id_number=typed)] == [traveller.id]


def test_pydantic_errors_become_validation_errors(make_uow):
    with make_uow(GZ_AGENT) as uow, pytest.raises(ValidationError) as caught:
        service.register_individual(
            uow, name=["张三"], id_number=make_id(), org_unit_id="GZ01", org_path=GZ_HALL
        )
    assert caught.value.params["fields"] == "name"


def test_categories_match_the_catalog_eligibility_values():
    from teleserve.catalog.schemas import CustomerCategory as CatalogCategory
    from teleserve.customers.models import CustomerCategory

    assert {c.value for c in CustomerCategory} == {c.value for c in CatalogCategory}
