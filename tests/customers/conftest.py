"""Fixtures of the customers tests: actors in two cities, valid ID numbers, a customer
with a service number and password, and a capture of the one-time codes sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.throttle import Throttle, set_throttle
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service
from teleserve.customers.validation import id_check_character

GZ = "/TS/GD/GZ/"
GZ_HALL = "/TS/GD/GZ/GZ01/"
SZ = "/TS/GD/SZ/"
PASSWORD = "382915"

GZ_AGENT = Actor(
    ActorKind.staff, "agent-gz", GZ, frozenset({"customers.read", "customers.write"}), "gz"
)
GZ_AUDITOR = Actor(
    ActorKind.staff,
    "sensitive-gz",
    GZ,
    frozenset({"customers.read", "customers.read_sensitive"}),
    "gz2",
)
SZ_AGENT = Actor(
    ActorKind.staff, "agent-sz", SZ, frozenset({"customers.read", "customers.write"}), "sz"
)
KIOSK = Actor(ActorKind.terminal, "K0001", GZ_HALL, frozenset(), "kiosk")


def make_id(region: str = "440106", born: str = "19900307", seq: str = "123") -> str:
    """A valid 18-digit resident ID number (seq's last digit odd: male)."""
    first17 = region + born + seq
    return first17 + id_check_character(first17)


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[Throttle]:
    throttle = Throttle()
    previous = set_throttle(throttle)
    yield throttle
    set_throttle(previous)


@dataclass
class Line:
    customer_id: str
    service_number: str
    id_number: str
    name: str


@pytest.fixture
def new_line(make_uow: Callable[..., UnitOfWork]) -> Callable[..., Line]:
    """Register a person in Guangzhou with a service number and the password PASSWORD."""
    counter = iter(range(100, 999))

    def factory(
        number: str = "13800138000", name: str = "张三", password: str | None = PASSWORD
    ) -> Line:
        id_number = make_id(seq=f"{next(counter):03d}")
        with make_uow(GZ_AGENT) as uow:
            customer = service.register_individual(
                uow,
                name=name,
                id_number=id_number,
                org_unit_id="GZ01",
                org_path=GZ_HALL,
                mobile=number,
            )
            if password is None:
                service.link_service_number(uow, number, customer.id, GZ_HALL)
            else:
                service.set_service_password(uow, number, customer.id, GZ_HALL, password)
            uow.commit()
        return Line(customer.id, number, id_number, name)

    return factory


@pytest.fixture
def sent_codes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(number, code) of every one-time code queued for SMS."""
    codes: list[tuple[str, str]] = []

    def capture(uow: UnitOfWork, recipient: str, code: str, *_owner: str) -> None:
        codes.append((recipient, code))

    monkeypatch.setattr(service, "_queue_otp_sms", capture)
    return codes
