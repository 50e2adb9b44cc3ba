"""The demo seed builds a consistent operator through the services, on both databases."""

from __future__ import annotations

import gc
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from teleserve.core import audit, crypto
from teleserve.core.actor import SYSTEM
from teleserve.core.errors import NotFound
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.validation import parse_resident_id
from teleserve.demo.seed import (
    DEMO_PASSWORD,
    DEMO_SERVICE_PASSWORD,
    _cyclic_gc_paused,
    seed_database,
)
from teleserve.iam import passwords as staff_passwords
from teleserve.iam import service as iam
from teleserve.numbers.models import PoolNumber
from teleserve.payments import service as payments


@pytest.fixture(scope="module")
def cheap_staff_hashes():
    # The seed hashes the demo staff password once; keep it cheap in tests.
    previous = staff_passwords.use_params(staff_passwords.Argon2Params(1, 1024, 1))
    yield
    staff_passwords.use_params(previous)


def test_seed_builds_a_consistent_operator(engine, settings, cheap_staff_hashes):
    result = seed_database(engine, customers=300, progress=False)
    assert result.customers == 300
    assert result.lines >= 300
    assert result.staff >= 10 and result.offerings >= 10
    assert any("admin" in login for login in result.logins)

    with UnitOfWork(engine) as uow:
        assert payments.check_ledger(uow) == []
        # staff can log in with the printed demo password (no MFA for an agent)
        actor = iam.authenticate(uow, "gz01.agent", DEMO_PASSWORD)
        assert actor.org_path.startswith("/TS/GD/GZ/")
        uow.commit()
    report = audit.verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)
    assert report.ok and report.records > 300 * 4

    with engine.connect() as conn:
        # 一证五号: no identity document holds more than five numbers
        per_card = conn.execute(
            select(PoolNumber.id_index, func.count())
            .where(PoolNumber.status == "assigned")
            .group_by(PoolNumber.id_index)
        ).all()
        assert per_card and max(n for _, n in per_card) <= 5
        assigned = sum(n for _, n in per_card)
        lines = conn.execute(text("SELECT count(*) FROM inventory_subscription")).scalar_one()
        assert assigned == lines == result.lines
        # Every number is registered to its holder's card: a person's identity document
        # as the customers domain indexed it, an organisation's credit code.
        cards = conn.execute(
            text(
                "SELECT p.id_index, d.number_index, o.credit_code FROM pool_number p"
                " LEFT JOIN cust_identity_document d ON d.customer_id = p.customer_id"
                " LEFT JOIN cust_organization o ON o.customer_id = p.customer_id"
                " WHERE p.status = 'assigned'"
            )
        ).all()
        assert len(cards) == assigned
        for card, document_index, credit_code in cards:
            expected = document_index or crypto.blind_index(credit_code, "id_number")
            assert card == expected


def test_seeded_customers_are_valid_and_scoped(engine, settings, cheap_staff_hashes):
    seed_database(engine, customers=120, progress=False)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, category, org_path FROM cust_customer")).all()
    assert len(rows) == 120
    categories = Counter(r.category for r in rows)
    assert categories["individual"] > categories["organisation"] > 0
    person = next(r for r in rows if r.category == "individual")
    with UnitOfWork(engine) as uow:
        parse_resident_id(customers.reveal_id_number(uow, person.id))  # valid check digit
        uow.commit()
    with UnitOfWork(engine) as uow:
        sz_agent = iam.authenticate(uow, "sz01.agent", DEMO_PASSWORD)
        uow.commit()
    guangzhou = next(r for r in rows if r.org_path.startswith("/TS/GD/GZ/"))
    futian = next(r for r in rows if r.org_path.startswith("/TS/GD/SZ/SZ01/"))
    with UnitOfWork(engine, sz_agent) as uow:
        assert customers.get_customer(uow, futian.id).id == futian.id
        with pytest.raises(NotFound):  # another city's customer does not exist for them
            customers.get_customer(uow, guangzhou.id)


def test_seeded_line_accepts_the_demo_service_password(engine, settings, cheap_staff_hashes):
    seed_database(engine, customers=30, progress=False)
    with engine.connect() as conn:
        number = (
            conn.execute(
                text("SELECT service_number FROM inventory_subscription ORDER BY service_number")
            )
            .scalars()
            .first()
        )
    with UnitOfWork(engine) as uow:
        token = customers.login_with_password(uow, number, DEMO_SERVICE_PASSWORD)
        assert token.level == 1
        uow.commit()


def test_seed_refuses_a_database_that_already_has_an_operator(engine, cheap_staff_hashes):
    seed_database(engine, customers=5, progress=False)
    with pytest.raises(Exception):  # noqa: B017 - the first duplicate the services report
        seed_database(engine, customers=5, progress=False)
    with UnitOfWork(engine, SYSTEM) as uow:
        assert payments.check_ledger(uow) == []


def test_the_customer_batches_pause_the_cyclic_collector_and_restore_it():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a batch failed")
    assert gc.isenabled()  # back on after a failure too
    gc.disable()
    try:
        with _cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


def test_the_seed_leaves_the_cyclic_collector_on(engine, cheap_staff_hashes):
    seed_database(engine, customers=20, progress=False)
    assert gc.isenabled()
