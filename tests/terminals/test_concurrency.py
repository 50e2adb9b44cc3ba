"""Races with real threads, each with its own unit of work and connection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from teleserve.core.errors import Conflict
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import service
from teleserve.terminals.models import Terminal, TerminalMasterKey

from .conftest import GZ_OPS

THREADS = 6


def race(engine, work: Callable[[UnitOfWork, int], object]) -> Counter[str]:
    barrier = threading.Barrier(THREADS)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            with UnitOfWork(engine, GZ_OPS) as uow:
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


def test_concurrent_registrations_of_one_id_exactly_one_wins(engine, tree):
    outcomes = race(
        engine,
        lambda uow, i: service.register_terminal(uow, {"terminal_id": "K1", "site": "GZTH-K1"}),
    )
    assert outcomes == {"won": 1, "conflict": THREADS - 1}
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Terminal)) == 1
        assert conn.scalar(select(func.count()).select_from(TerminalMasterKey)) == 1


def test_concurrent_rotations_leave_one_current_key_and_at_most_one_in_grace(
    engine, register, make_uow
):
    register("K1")
    outcomes = race(engine, lambda uow, i: service.rotate_master_key(uow, "K1"))
    assert outcomes == {"won": THREADS}
    with engine.connect() as conn:
        current = conn.scalar(
            select(func.count())
            .select_from(TerminalMasterKey)
            .where(TerminalMasterKey.valid_until.is_(None))
        )
    assert current == 1
    with make_uow(readonly=True) as uow:
        found = service.terminal_access(uow, "K1")
    assert found is not None and len(found.master_keys) == 2
