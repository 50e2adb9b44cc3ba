from datetime import date

import pytest

from teleserve.core.errors import ValidationError
from teleserve.customers import passwords


def _refused(password: str, **kw: object) -> str:
    with pytest.raises(ValidationError) as caught:
        passwords.check_strength(password, service_number="13800138000", **kw)
    return caught.value.message


def test_weak_passwords_are_refused_with_their_reason():
    assert "exactly 6 digits" in _refused("12345")
    assert "exactly 6 digits" in _refused("1234567")
    assert "exactly 6 digits" in _refused("12a456")
    assert "exactly 6 digits" in _refused("１２３４５６")  # full-width digits
    assert "repeated" in _refused("888888")
    for straight in ("123456", "654321", "012345", "456789", "987654"):
        assert "straight sequence" in _refused(straight)
    assert "repeated pattern" in _refused("121212")
    assert "repeated pattern" in _refused("123123")
    assert "last 6 digits of the service number" in _refused("138000")
    assert "last 6 digits of the ID number" in _refused("071239", id_numbers=["440106199003071239"])
    born = date(1990, 3, 7)
    for birth in ("900307", "199003", "030790", "070390"):
        assert "birth date" in _refused(birth, birth_dates=[born])


def test_good_passwords_pass():
    passwords.check_strength(
        "382915",
        service_number="13800138000",
        birth_dates=[date(1990, 3, 7)],
        id_numbers=["440106199003071239"],
    )
    passwords.check_strength("135792", service_number="02088889999")


def test_hash_is_argon2id_with_the_pepper(settings):
    stored = passwords.hash_password("382915")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(stored, "382915")
    assert not passwords.verify_password(stored, "382916")
    assert not passwords.needs_rehash(stored)
    # Without the server's pepper the hash is useless.
    settings.pepper = "another-pepper"
    assert not passwords.verify_password(stored, "382915")


def test_other_parameters_need_a_rehash():
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("x")
    assert passwords.needs_rehash(old)
    assert passwords.needs_rehash("not a hash")
    assert not passwords.verify_password("not a hash", "382915")
