"""Service passwords (服务密码): six digits, hashed with argon2id and a server-side pepper.

Six digits are a million guesses: no hash makes that slow enough offline on its own. The
pepper (``settings.pepper``, kept outside the database) is what protects a stolen database:
the password is HMAC-SHA256'd with it before argon2, so without the pepper the hashes
cannot be attacked at all. argon2 then bounds the damage if database *and* pepper leak.
argon2-cffi exposes no argon2 "secret" (keyed hashing) parameter, hence the HMAC.

The argon2 parameters are tuned for the login rate (measured figures and the trade-off
are in docs/customer-auth.md); a hash made with other parameters is upgraded at the next
successful login (``needs_rehash``).

Weak passwords are refused by ``check_strength``: one repeated digit, straight sequences,
short repeated patterns, the last six digits of the service number or of the ID number,
and the digits of the birth date.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
from collections.abc import Iterable
from datetime import date
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.settings import get_settings

# argon2id, 19 MiB, 2 passes, 1 lane: OWASP's recommended minimum, ~18 ms of one core
# per hash on the reference machine (docs/customer-auth.md).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

_SIX_DIGITS = re.compile(r"[0-9]{6}")


def _peppered(password: str) -> str:
    key = get_settings().pepper.encode()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()


def hash_password(password: str) -> str:
    """The PHC string (``$argon2id$v=19$m=19456,t=2,p=1$...``) of a peppered password."""
    return _hasher.hash(_peppered(password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, _peppered(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def burn_verification(password: str) -> None:
    """Spend the time of one verification, for a number that has no password: a login
    for an unknown number must take as long as one with a wrong password."""
    verify_password(_dummy_hash(), password)


def _birth_date_digits(born: date) -> set[str]:
    full = born.strftime("%Y%m%d")
    variants = {full[i : i + 6] for i in range(len(full) - 5)}
    variants.add(born.strftime("%m%d%y"))
    variants.add(born.strftime("%d%m%y"))
    return variants


def _is_straight(password: str) -> bool:
    steps = {int(b) - int(a) for a, b in itertools.pairwise(password)}
    return steps in ({1}, {-1})


def _is_repeated_pattern(password: str) -> bool:
    return password[:2] * 3 == password or password[:3] * 2 == password


def check_format(password: str) -> None:
    if not isinstance(password, str) or not _SIX_DIGITS.fullmatch(password):
        raise ValidationError(_("A service password is exactly 6 digits"), code="password_format")


def check_strength(
    password: str,
    *,
    service_number: str,
    birth_dates: Iterable[date] = (),
    id_numbers: Iterable[str] = (),
) -> None:
    """Refuse a service password that is malformed or easy to guess."""
    check_format(password)
    if len(set(password)) == 1:
        raise ValidationError(
            _("A service password cannot be one digit repeated, such as 888888"),
            code="password_weak",
        )
    if _is_straight(password):
        raise ValidationError(
            _("A service password cannot be a straight sequence such as 123456 or 654321"),
            code="password_weak",
        )
    if _is_repeated_pattern(password):
        raise ValidationError(
            _("A service password cannot be a repeated pattern such as 121212 or 123123"),
            code="password_weak",
        )
    digits = re.sub(r"\D", "", service_number)
    if len(digits) >= 6 and digits[-6:] == password:
        raise ValidationError(
            _("A service password cannot be the last 6 digits of the service number"),
            code="password_weak",
        )
    for number in id_numbers:
        if number[-6:] == password:
            raise ValidationError(
                _("A service password cannot be the last 6 digits of the ID number"),
                code="password_weak",
            )
    for born in birth_dates:
        if password in _birth_date_digits(born):
            raise ValidationError(
                _("A service password cannot be made of the birth date"),
                code="password_weak",
            )
