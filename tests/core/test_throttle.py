import threading
import time

import limits.storage.memory
import pytest

from teleserve.core import throttle as throttle_module
from teleserve.core.errors import RateLimited
from teleserve.core.throttle import Rate, Throttle, get_throttle, set_throttle


def test_rate_parsing():
    assert Rate.parse("30/minute") == Rate(30, 60)
    assert Rate.parse("5 per 10 seconds") == Rate(5, 10)
    assert Rate.parse("200/day") == Rate(200, 86400)
    assert Rate.parse("1 per 2 hours") == Rate(1, 7200)
    for bad in ("", "x/minute", "5/fortnight", "-1/minute"):
        with pytest.raises(ValueError):
            Rate.parse(bad)
    with pytest.raises(ValueError):
        Rate(1, 0)


def test_hits_are_counted_per_key_up_to_the_rate():
    throttle = Throttle()
    rate = Rate(3, 60)
    assert [throttle.hit("a", rate) for _ in range(4)] == [True, True, True, False]
    assert throttle.hit("b", rate)  # another key has its own window
    assert throttle.remaining("a", rate) == 0
    assert throttle.remaining("b", rate) == 2
    # A string rate is the same rate.
    assert not throttle.hit("a", "3/minute")


def test_test_does_not_count():
    throttle = Throttle()
    rate = Rate(1, 60)
    assert throttle.test("k", rate) and throttle.test("k", rate)
    assert throttle.hit("k", rate)
    assert not throttle.test("k", rate)


def test_a_zero_rate_refuses_everything():
    throttle = Throttle()
    assert not throttle.hit("k", Rate(0, 60))


def test_enforce_raises_with_retry_after():
    throttle = Throttle()
    rate = Rate(2, 30)
    throttle.enforce("k", rate)
    throttle.enforce("k", rate)
    assert throttle.retry_after("k", Rate(5, 30)) == 0
    with pytest.raises(RateLimited) as caught:
        throttle.enforce("k", rate)
    assert 1 <= caught.value.params["retry_after_s"] <= 30
    assert caught.value.status == 429


class FakeTime:
    """Stands in for the ``time`` module where the memory storage and we read the time."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(throttle_module, "time", fake)
    return fake


def test_moving_window_frees_slots_as_hits_age(clock):
    throttle = Throttle()
    rate = Rate(2, 60)
    assert throttle.hit("k", rate)
    clock.now += 30
    assert throttle.hit("k", rate)
    assert not throttle.hit("k", rate)
    assert throttle.retry_after("k", rate) == 30  # when the first hit leaves the window
    clock.now += 29.5
    assert not throttle.hit("k", rate)
    clock.now += 0.6  # the first hit is over 60 s old: one slot, not two (no fixed window)
    assert throttle.hit("k", rate)
    assert not throttle.hit("k", rate)
    assert throttle.retry_after("k", rate) == 30


def test_small_windows_in_real_time():
    throttle = Throttle()
    rate = Rate(1, 1)
    assert throttle.hit("k", rate)
    assert not throttle.hit("k", rate)
    time.sleep(1.05)
    assert throttle.hit("k", rate)


def test_clear_and_reset():
    throttle = Throttle()
    rate = Rate(1, 60)
    throttle.hit("a", rate)
    throttle.hit("b", rate)
    throttle.clear("a", rate)
    assert throttle.hit("a", rate) and not throttle.hit("b", rate)
    throttle.reset()
    assert throttle.hit("b", rate)


def test_concurrent_hits_never_exceed_the_rate():
    throttle = Throttle()
    rate = Rate(50, 60)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            ok = throttle.hit("shared", rate)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 50


def test_process_wide_throttle_can_be_replaced():
    mine = Throttle()
    previous = set_throttle(mine)
    try:
        assert get_throttle() is mine
    finally:
        set_throttle(previous)
    set_throttle(None)
    assert isinstance(get_throttle(), Throttle)
    set_throttle(previous)
