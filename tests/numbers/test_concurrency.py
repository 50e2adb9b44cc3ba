"""Races with real threads, each with its own unit of work and connection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from teleserve.core.errors import Conflict
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import service
from teleserve.numbers.models import PoolNumber
from teleserve.numbers.schemas import AssignItem

from .conftest import card, sz_number

THREADS = 8


def race(
    make_uow: Callable[..., UnitOfWork], work: Callable[[UnitOfWork, int], object]
) -> Counter[str]:
    """Run ``work`` in THREADS threads released together; tally wins and error types."""
    barrier = threading.Barrier(THREADS)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            with make_uow() as uow:
                work(uow, i)
                uow.commit()
            outcome = "won"
        except Conflict:
            outcome = "conflict"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_reservations_of_one_number_exactly_one_wins(pool, engine):
    target = sz_number(7)
    outcomes = race(pool.make_uow, lambda uow, i: service.reserve(uow, target, f"s:{i}"))
    assert outcomes == {"won": 1, "conflict": THREADS - 1}
    with pool.make_uow() as uow:
        number = service.get(uow, target)
    assert number.holder is not None and number.holder.startswith("s:")


def test_concurrent_assignments_respect_one_card_five_numbers(pool, engine):
    for n in range(4):
        pool.run(
            service.assign, sz_number(20 + n), holder="x:0", id_index=card(9), customer_id="C9"
        )
    outcomes = race(
        pool.make_uow,
        lambda uow, i: service.assign(
            uow, sz_number(50 + i), holder=f"x:{i}", id_index=card(9), customer_id="C9"
        ),
    )
    assert outcomes == {"won": 1, "conflict": THREADS - 1}
    with engine.connect() as conn:
        held = conn.scalar(select(func.count()).where(PoolNumber.id_index == card(9)))
    assert held == 5


def test_concurrent_direct_assignments_of_one_number_to_many_cards(pool, engine):
    target = sz_number(8)
    outcomes = race(
        pool.make_uow,
        lambda uow, i: service.assign(
            uow, target, holder=f"x:{i}", id_index=card(i), customer_id=f"C{i}"
        ),
    )
    assert outcomes == {"won": 1, "conflict": THREADS - 1}
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(PoolNumber.id_index.is_not(None))) == 1


def test_concurrent_batches_respect_one_card_five_numbers_without_deadlock(pool, engine):
    # Card 9 holds 4, so of 8 batches each wanting one more number for it exactly one
    # wins. Every batch also takes a number for card 10, and half list the two cards in
    # the opposite order: cards are locked sorted, so no batch waits for another in a
    # cycle (a deadlock would show up here as an error other than Conflict).
    for n in range(4):
        pool.run(
            service.assign, sz_number(20 + n), holder="x:0", id_index=card(9), customer_id="C9"
        )

    def batch(uow: UnitOfWork, i: int) -> object:
        items = [
            AssignItem(number=sz_number(50 + i), holder="x", id_index=card(9), customer_id="C9"),
            AssignItem(number=sz_number(70 + i), holder="x", id_index=card(10), customer_id="C"),
        ]
        return service.assign_batch(uow, items if i % 2 else items[::-1])

    assert race(pool.make_uow, batch) == {"won": 1, "conflict": THREADS - 1}
    with engine.connect() as conn:
        held = dict(
            conn.execute(
                select(PoolNumber.id_index, func.count()).group_by(PoolNumber.id_index)
            ).all()
        )
    assert (held[card(9)], held[card(10)]) == (5, 1)


def test_concurrent_batches_sharing_numbers_in_opposite_orders_one_wins(pool, engine):
    # Different cards per thread, so only the numbers are contended; half the batches
    # list them the other way round. Numbers are locked in sorted order: one batch gets
    # both, the others find them taken — none deadlocks, none gets just one of them.
    first, second = sz_number(30), sz_number(31)

    def batch(uow: UnitOfWork, i: int) -> object:
        items = [
            AssignItem(number=first, holder=f"x:{i}", id_index=card(2 * i), customer_id="C"),
            AssignItem(number=second, holder=f"x:{i}", id_index=card(2 * i + 1), customer_id="C"),
        ]
        return service.assign_batch(uow, items if i % 2 else items[::-1])

    assert race(pool.make_uow, batch) == {"won": 1, "conflict": THREADS - 1}
    with engine.connect() as conn:
        holders = conn.execute(
            select(PoolNumber.holder).where(PoolNumber.value.in_([first, second]))
        ).scalars()
        assert len(set(holders)) == 1  # both numbers went to the same batch
