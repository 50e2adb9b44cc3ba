from datetime import UTC, date, datetime

import pytest

from teleserve.core.calendar import (
    HOLIDAY,
    WORKDAY,
    BusinessCalendar,
    load_calendar,
    seed_default_calendar,
    set_day,
)
from teleserve.core.errors import ValidationError


@pytest.fixture
def cal(engine) -> BusinessCalendar:
    with engine.begin() as conn:
        seed_default_calendar(conn)
    with engine.connect() as conn:
        return load_calendar(conn)


def test_holidays_and_make_up_days(cal):
    assert not cal.is_working_day(date(2026, 10, 1))  # National Day, Thursday
    assert cal.is_working_day(date(2026, 10, 10))  # make-up Saturday
    assert not cal.is_working_day(date(2026, 11, 28))  # ordinary Saturday
    assert cal.is_working_day(date(2026, 11, 25))  # ordinary Wednesday


def test_add_working_days_skips_the_golden_week(cal):
    # Wednesday 30 September + 1 working day: 1-7 October are holidays, 8 October is a
    # Thursday and a working day.
    assert cal.add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)


def test_business_seconds_count_only_office_hours(cal):
    # Friday 17:00 Shanghai to Monday 10:00 Shanghai: 1 h Friday + 1 h Monday.
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 +08
    end = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 +08
    assert cal.business_seconds_between(start, end) == 2 * 3600


def test_deadline_lands_on_next_working_day(cal):
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # Friday 17:00 +08
    deadline = cal.add_business_seconds(start, 2 * 3600)
    assert deadline == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # Monday 10:00 +08
    assert cal.business_seconds_between(start, deadline) == 2 * 3600


def test_set_day_overrides_and_refuses_bad_kind(engine):
    with engine.begin() as conn:
        set_day(conn, date(2026, 12, 26), WORKDAY, "make-up")
        set_day(conn, date(2026, 12, 26), HOLIDAY, "changed mind")
    with engine.connect() as conn:
        cal = load_calendar(conn)
    assert not cal.is_working_day(date(2026, 12, 26))
    with engine.begin() as conn, pytest.raises(ValidationError):
        set_day(conn, date(2026, 12, 27), "party", "no")
