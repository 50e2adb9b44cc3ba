"""``assign_batch``: many numbers in one unit of work, refused whole on any bad item."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from teleserve.core.errors import Conflict, DomainError, NotFound, ValidationError
from teleserve.numbers import service
from teleserve.numbers.models import IdCardLock, NumberStatus, PoolNumber
from teleserve.numbers.schemas import AssignItem

from .conftest import SZ, audit_actions, bj_number, card, count_rows, outbox, staff, sz_number

ALICE = "session:alice"


def item(value: str, id_card: int = 1, holder: str = "seed:1", **kwargs: str) -> AssignItem:
    fields = {
        "number": value,
        "holder": holder,
        "id_index": card(id_card),
        "customer_id": f"C{id_card}",
        "subscription_ref": f"S-{value}",
        **kwargs,
    }
    return AssignItem(**fields)  # type: ignore[arg-type]


def stored(engine) -> dict[str, tuple[str, str | None, str | None]]:
    """Every number's (status, holder, id_index): compared whole to prove nothing changed."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(PoolNumber.value, PoolNumber.status, PoolNumber.holder, PoolNumber.id_index)
        ).all()
    return {r.value: (r.status, r.holder, r.id_index) for r in rows}


def assert_refused(pool, engine, items, error_type, index, actor=None):
    """The batch raises ``error_type`` naming item ``index`` and changes nothing at all."""
    before = stored(engine)
    cards_before = count_rows(engine, IdCardLock)
    records_before = audit_actions(engine, "numbers.assigned")
    events_before = outbox(engine, "numbers.assigned")
    with pytest.raises(error_type) as caught:
        if actor is None:
            pool.run(service.assign_batch, items)
        else:
            pool.run(service.assign_batch, items, actor=actor)
    assert caught.value.params["item"] == index
    assert stored(engine) == before
    assert count_rows(engine, IdCardLock) == cards_before
    assert audit_actions(engine, "numbers.assigned") == records_before
    assert outbox(engine, "numbers.assigned") == events_before
    return caught.value


def test_batch_assigns_many(pool, engine, frozen_clock):
    # 60 numbers over 15 cards; the first two were reserved by their holder beforehand,
    # and one is typed the way a person would (it is read after parsing).
    pool.run(service.reserve, sz_number(0), "seed:0")
    pool.run(service.reserve, sz_number(1), "seed:1")
    values = [sz_number(n) for n in range(60)]
    items = [item(v, id_card=n // 4, holder=f"seed:{n}") for n, v in enumerate(values)]
    items[7] = item("+86 138 0010 0007", id_card=1, holder="seed:7")
    assigned = pool.run(service.assign_batch, items)

    assert [n.value for n in assigned] == values  # input order, canonical numbers
    assert {n.status for n in assigned} == {NumberStatus.assigned}
    assert assigned[7].holder == "seed:7" and assigned[7].customer_id == "C1"
    assert assigned[0].grade_code == "aaaa" and assigned[0].premium_fee == 300_000
    assert assigned[0].assigned_at == frozen_clock.now()
    # What the service returns is what a later read shows.
    assert [pool.read(service.get, n.value) for n in assigned[:12]] == assigned[:12]
    for id_card in range(15):
        assert pool.read(service.count_for_id_card, card(id_card)) == 4
    with engine.connect() as conn:
        row = conn.execute(select(PoolNumber).where(PoolNumber.value == sz_number(9))).one()
    assert (row.holder, row.id_index, row.customer_id, row.subscription_ref) == (
        "seed:9",
        card(2),
        "C2",
        f"S-{sz_number(9)}",
    )

    records = audit_actions(engine, "numbers.assigned")
    assert sorted(subject for _a, subject, _d in records) == values  # one per number
    detail = json.loads(next(d for _a, s, d in records if s == sz_number(9)))
    assert detail["holder"] == "seed:9" and detail["id_index"] == card(2)
    events = outbox(engine, "numbers.assigned")
    assert sorted(e["number"] for e in events) == values
    event = next(e for e in events if e["number"] == sz_number(9))
    assert event == {
        "number": sz_number(9),
        "kind": "mobile",
        "org_path": SZ,
        "grade_code": assigned[9].grade_code,
        "customer_id": "C2",
        "subscription_ref": f"S-{sz_number(9)}",
        "holder": "seed:9",
        "assigned_at": frozen_clock.now().isoformat(),
    }


def test_empty_batch_does_nothing(pool, engine):
    assert pool.run(service.assign_batch, []) == []
    assert count_rows(engine, IdCardLock) == 0


def test_batch_mixing_cards_counts_each_card_with_what_it_holds(pool, engine):
    pool.run(service.assign, sz_number(90), holder="x", id_index=card(1), customer_id="C1")
    pool.run(service.assign, sz_number(91), holder="x", id_index=card(1), customer_id="C1")
    pool.run(service.assign, sz_number(92), holder="x", id_index=card(2), customer_id="C2")
    # Interleaved cards: card 1 reaches 5 (2 + 3), card 2 reaches 5 (1 + 4), card 3 gets 5,
    # Beijing numbers too (the rule is operator-wide).
    cards = [1, 2, 3, 2, 3, 1, 3, 2, 3, 1, 2, 3]
    items = [item(sz_number(n), id_card=c) for n, c in enumerate(cards)]
    items += [item(bj_number(0), id_card=4), item(bj_number(1), id_card=4)]
    pool.run(service.assign_batch, items)
    counts = [pool.read(service.count_for_id_card, card(c)) for c in (1, 2, 3, 4)]
    assert counts == [5, 5, 5, 2]
    # Every card is full now: one more number for any of them is refused.
    for id_card in (1, 2, 3):
        with pytest.raises(Conflict) as caught:
            pool.run(
                service.assign_batch,
                [item(sz_number(50), id_card=4), item(sz_number(51), id_card=id_card)],
            )
        assert caught.value.code == "id_card_limit" and caught.value.params["item"] == 1


def test_sixth_number_for_one_card_refuses_the_whole_batch(pool, engine):
    for n in range(3):
        pool.run(service.assign, sz_number(90 + n), holder="x", id_index=card(1), customer_id="C1")
    # Card 1 holds 3: the batch's third number for it (item 4) would be its sixth.
    items = [
        item(sz_number(0), id_card=1),
        item(sz_number(1), id_card=2),
        item(sz_number(2), id_card=1),
        item(sz_number(3), id_card=2),
        item(sz_number(4), id_card=1),
        item(sz_number(5), id_card=2),
    ]
    error = assert_refused(pool, engine, items, Conflict, 4)
    assert error.code == "id_card_limit"
    assert "一证五号" in error.render("zh-CN")
    assert pool.read(service.count_for_id_card, card(1)) == 3
    assert pool.read(service.count_for_id_card, card(2)) == 0
    # Six new numbers for a fresh card within one batch: the sixth (item 5) is refused.
    six = [item(sz_number(10 + n), id_card=7) for n in range(6)]
    assert assert_refused(pool, engine, six, Conflict, 5).code == "id_card_limit"
    # Five are fine.
    pool.run(service.assign_batch, six[:5])
    assert pool.read(service.count_for_id_card, card(7)) == 5


def test_the_limit_follows_the_setting_in_a_batch(pool, engine, settings):
    settings.numbers_per_id_card = 2
    items = [item(sz_number(n), id_card=1) for n in range(3)]
    assert assert_refused(pool, engine, items, Conflict, 2).params["limit"] == 2


BAD_ITEMS = [
    ("malformed number", ValidationError, {"number": "139123"}),
    ("invalid prefix", ValidationError, {"number": "14000000000"}),
    ("raw ID number", ValidationError, {"id_index": "110101199001011234"}),
    ("empty customer", ValidationError, {"customer_id": ""}),
    ("long subscription", ValidationError, {"subscription_ref": "x" * 65}),
    ("holder with a space", ValidationError, {"holder": "a b"}),
    ("unknown number", NotFound, {"number": "13912345678"}),
]


@pytest.mark.parametrize(
    ("bad", "error_type"),
    [(b[2], b[1]) for b in BAD_ITEMS],
    ids=[b[0] for b in BAD_ITEMS],
)
@pytest.mark.parametrize("index", [0, 3])
def test_a_bad_item_refuses_the_whole_batch_and_names_it(pool, engine, bad, error_type, index):
    items = [item(sz_number(n), id_card=n) for n in range(5)]
    items[index] = item(sz_number(index), id_card=index, **bad)
    assert_refused(pool, engine, items, error_type, index)


def test_unassignable_numbers_refuse_the_whole_batch(pool, engine):
    pool.run(service.reserve, sz_number(3), ALICE)
    pool.run(service.assign, sz_number(4), holder="x", id_index=card(9), customer_id="C9")
    base = [item(sz_number(n), id_card=n) for n in range(3)]

    reserved = assert_refused(pool, engine, [*base, item(sz_number(3))], Conflict, 3)
    assert reserved.code == "reserved"  # by someone else: not even an admin takes it
    taken = assert_refused(pool, engine, [*base, item(sz_number(4))], Conflict, 3)
    assert taken.code == "unavailable"
    # A number twice in one batch.
    twice = [*base, item(sz_number(1), id_card=5)]
    error = assert_refused(pool, engine, twice, ValidationError, 3)
    assert error.params["first"] == 1 and "138****0001" in error.render("en")
    # Staff without numbers.admin assign only from their own reservations.
    agent = staff(SZ)
    pool.run(service.reserve, sz_number(20), "seed:1", actor=agent)
    mixed = [item(sz_number(20)), item(sz_number(21))]
    error = assert_refused(pool, engine, mixed, Conflict, 1, actor=agent)
    assert error.code == "not_reserved"
    # A number of another region is missing for a Shenzhen agent.
    pool.run(service.reserve, bj_number(5), "seed:1")
    foreign = [item(sz_number(20)), item(bj_number(5))]
    assert_refused(pool, engine, foreign, NotFound, 1, actor=agent)
    assert pool.run(service.assign_batch, mixed[:1], actor=agent)[0].value == sz_number(20)


def test_single_assign_is_a_batch_of_one(pool, engine):
    """``assign`` keeps its messages and codes; its errors also name item 0."""
    pool.run(service.reserve, sz_number(3), ALICE)
    with pytest.raises(Conflict) as caught:
        pool.run(service.assign, sz_number(3), holder="x", id_index=card(1), customer_id="C")
    assert caught.value.code == "reserved" and caught.value.params["item"] == 0
    assert caught.value.render("en") == "Number 138****0003 is reserved by someone else"
    with pytest.raises(ValidationError) as caught:
        pool.run(service.assign, "abc", holder="x", id_index=card(1), customer_id="C")
    assert caught.value.message == "Malformed number {number}"
    assert caught.value.params["item"] == 0
    city_admin = staff(SZ, "numbers.assign", "numbers.admin")
    with pytest.raises(NotFound) as caught:
        pool.run(
            service.assign,
            bj_number(1),
            holder="x",
            id_index=card(1),
            customer_id="C",
            actor=city_admin,
        )
    assert caught.value.render("zh-CN") == "号码 139****0001 不存在"
    assert stored(engine)[bj_number(1)] == ("free", None, None)


def test_batch_needs_the_assign_permission(pool, engine):
    with pytest.raises(DomainError) as caught:
        pool.run(service.assign_batch, [item(sz_number(1))], actor=staff(SZ, "numbers.reserve"))
    assert caught.value.code == "forbidden"


def test_staff_assign_their_own_reservations_in_one_batch(pool, engine):
    """Without numbers.admin each number must be the item's holder's live reservation
    (the condition every row of the batch's UPDATE is checked against)."""
    agent = staff(SZ)
    pool.run(service.reserve, sz_number(30), "seed:1", actor=agent)
    pool.run(service.reserve, sz_number(31), "seed:2", actor=agent)
    items = [item(sz_number(31), id_card=2, holder="seed:2"), item(sz_number(30))]
    assigned = pool.run(service.assign_batch, items, actor=agent)
    assert [(n.value, n.holder, n.customer_id) for n in assigned] == [
        (sz_number(31), "seed:2", "C2"),
        (sz_number(30), "seed:1", "C1"),
    ]
    now_stored = stored(engine)
    assert now_stored[sz_number(30)] == ("assigned", "seed:1", card(1))
    assert now_stored[sz_number(31)] == ("assigned", "seed:2", card(2))
