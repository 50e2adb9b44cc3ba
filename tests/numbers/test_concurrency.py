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
