"""Input and output shapes of the iam services.

Outputs are frozen copies of the rows, never the ORM objects: a password hash or an
encrypted TOTP secret can then never leak into a template or a JSON response.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class OrgLevel(StrEnum):
    operator = "operator"
    province = "province"
    city = "city"
    hall = "hall"
    site = "site"  # a kiosk location, under a city or a hall


class OrgUnitSpec(BaseModel):
    """One org unit to create; the parent is named by its code (batch creation names
    parents that do not have an id yet)."""

    model_config = ConfigDict(frozen=True)

    code: str
    name_zh: str
    name_en: str
    level: OrgLevel
    parent_code: str | None = None


class OrgUnitOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    code: str
    name_zh: str
    name_en: str
    level: OrgLevel
    parent_id: str | None
    path: str
    created_at: datetime


class StaffUserSpec(BaseModel):
    """One user of a batch (the seed); the password hash is given once for the batch."""

    model_config = ConfigDict(frozen=True)

    username: str
    display_name: str
    org_id: str
    roles: tuple[str, ...] = Field(min_length=1)
    # Optional pre-enrolled TOTP secret (base32), e.g. for demo logins printed by the seed.
    mfa_secret: str | None = None


class StaffUserOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    display_name: str
    org_id: str
    org_path: str
    roles: tuple[str, ...]
    active: bool
    locked_until: datetime | None
    mfa_enabled: bool
    mfa_required: bool
    last_login_at: datetime | None
    created_at: datetime


class MfaEnrolment(NamedTuple):
    """Shown once to the user being enrolled: type the secret or scan the URI."""

    secret: str
    provisioning_uri: str


class ApiClientOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    client_id: str
    name: str
    org_id: str
    org_path: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


class CreatedApiClient(NamedTuple):
    client: ApiClientOut
    secret: str  # shown once; only its SHA-256 is stored


class IssuedToken(NamedTuple):
    access_token: str
    expires_in: int  # seconds
    scopes: tuple[str, ...]
