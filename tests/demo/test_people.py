"""The seed's people: made in a helper process, exactly as they would be made in-process."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from teleserve.core import audit
from teleserve.core.uow import UnitOfWork
from teleserve.customers.validation import parse_resident_id
from teleserve.demo import people, seed
from teleserve.iam import passwords as staff_passwords
from teleserve.payments import service as payments


def test_the_helper_makes_the_same_batches_as_this_process():
    plan = people.customer_plan(130)
    here = list(people.MadeHere(plan, 7, 40))
    helper = people.Prefetched(plan, 7, 40)
    try:
        fetched = list(helper)
    finally:
        helper.close()
    assert [len(batch) for batch in fetched] == [40, 40, 40, 10]
    assert fetched == here
    persons = [person for batch in here for person in batch]
    documents = [person.document for person in persons]
    assert len(set(documents)) == len(documents)  # one customer per ID card or company
    lines = [number for person in persons for number in person.numbers]
    assert len(set(lines)) == len(lines)
    assert {person.city_code for person in persons} == {city.code for city, _ in plan}
    for person in persons:
        assert len(person.numbers) == len(person.lines)
        if person.category == "individual":
            assert person.id_number is not None
            assert parse_resident_id(person.id_number).gender == person.gender
        if person.top_up is not None:
            assert person.account_kind == "prepaid" and person.top_up > 0


def test_another_seed_gives_other_people():
    plan = people.customer_plan(20)
    first = next(iter(people.MadeHere(plan, 1, 20)))
    second = next(iter(people.MadeHere(plan, 2, 20)))
    assert first != second


def test_closing_early_stops_the_helper():
    helper = people.Prefetched(people.customer_plan(300), 3, 50)
    first = next(iter(helper))
    assert len(first) == 50
    helper.close()  # the helper is blocked writing the next batch: it is killed, not awaited
    assert helper._helper.returncode is not None


def test_a_helper_that_dies_is_an_error_not_a_hang():
    helper = people.Prefetched(people.customer_plan(300), 3, 50)
    helper._helper.kill()
    with pytest.raises(RuntimeError, match="helper stopped"):
        for _batch in helper:
            pass
    helper.close()


def test_a_seed_of_several_batches_goes_through_the_helper(engine, settings, monkeypatch):
    monkeypatch.setattr(seed, "BATCH", 60)  # 150 customers: three batches, made by the helper
    made: list[int] = []
    original = people.Prefetched.__iter__

    def counted(self):
        for batch in original(self):
            made.append(len(batch))
            yield batch

    monkeypatch.setattr(people.Prefetched, "__iter__", counted)
    previous = staff_passwords.use_params(staff_passwords.Argon2Params(1, 1024, 1))
    try:
        result = seed.seed_database(engine, customers=150, progress=False)
    finally:
        staff_passwords.use_params(previous)
    assert made == [60, 60, 30]
    assert result.customers == 150 and result.lines >= 150
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cust_customer")).scalar_one() == 150
    with UnitOfWork(engine) as uow:
        assert payments.check_ledger(uow) == []
    report = audit.verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)
    assert report.ok
