"""Staff password hashing (argon2id) and the password policy.

Production parameters: argon2id, time_cost=3, memory_cost=64 MiB, parallelism=1 — the
RFC 9106 "second recommended option" with one lane, because a login should hold one core,
not all of them. Measured on the development machine (Xeon, 2 cores): ~137 ms per hash or
verify. Staff log in a few times a day, so that cost is paid rarely; requests after login
carry a signed session and never hash again. See ``docs/security-staff.md``.

``params`` is a module-level value the hasher is built from, so tests can swap in cheap
parameters with ``use_params`` (``tests/iam/conftest.py`` does). Hashes are PHC strings
that carry their own parameters: a hash made with old parameters still verifies, and
``needs_rehash`` tells the login to upgrade it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int


PRODUCTION_PARAMS = Argon2Params(time_cost=3, memory_cost=64 * 1024, parallelism=1)

params: Argon2Params = PRODUCTION_PARAMS

MIN_LENGTH = 10
# argon2 accepts any length, but a megabyte "password" would still cost a copy and a
# hash per attempt; nobody types more than this.
MAX_LENGTH = 128


def use_params(new: Argon2Params) -> Argon2Params:
    """Install ``new`` hashing parameters (tests); returns the previous ones."""
    global params
    previous, params = params, new
    return previous


@lru_cache(maxsize=4)
def _hasher(p: Argon2Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=p.time_cost,
        memory_cost=p.memory_cost,
        parallelism=p.parallelism,
        type=Type.ID,
    )


@lru_cache(maxsize=4)
def _dummy_hash(p: Argon2Params) -> str:
    return _hasher(p).hash("teleserve-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id PHC string for ``password`` (no policy check: see ``check_policy``)."""
    return _hasher(params).hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher(params).verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of a real verification, so an unknown username answers no faster
    than a known one (no user enumeration by timing)."""
    verify_password(_dummy_hash(params), password)


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher(params).check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def is_argon2id_hash(value: str) -> bool:
    return value.startswith("$argon2id$v=19$") and value.count("$") == 5


def check_policy(password: str, username: str) -> None:
    """Refuse passwords that are short or trivially guessable (NIST SP 800-63B style:
    length over composition rules)."""
    if len(password) < MIN_LENGTH:
        raise ValidationError(_("The password must have at least {min} characters"), min=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise ValidationError(_("The password must have at most {max} characters"), max=MAX_LENGTH)
    if len(set(password)) <= 2:
        raise ValidationError(_("The password is too repetitive"))
    if username and username.lower() in password.lower():
        raise ValidationError(_("The password must not contain the username"))
