"""Tables of the iam domain: the organisation tree, staff users and their roles, API
clients and their access tokens.

Scoping relies on materialised paths: ``iam_org_unit.path`` is ``/<root>/<province>/...``
built from unit codes, and the rows that belong to an org unit (users, API clients) copy
that path into their own ``org_path`` column so a scoped query is a single indexed
``LIKE '<actor path>%'`` without a join. Org units are never re-parented, so the copies
cannot go stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base
from teleserve.core.ids import new_id


class OrgUnit(Base):
    __tablename__ = "iam_org_unit"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(10))
    parent_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("iam_org_unit.id"), index=True
    )
    path: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]


class StaffUser(Base):
    __tablename__ = "iam_staff_user"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("iam_org_unit.id"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    # A PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash): parameters travel with
    # the hash, so changing them only needs a rehash at the next successful login.
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    # TOTP: the confirmed secret, and one being enrolled (replaces it only once a first
    # code proves the new authenticator works). Both AES-GCM encrypted.
    mfa_secret_enc: Mapped[str | None] = mapped_column(String(255))
    mfa_pending_secret_enc: Mapped[str | None] = mapped_column(String(255))
    mfa_enabled_at: Mapped[datetime | None]
    # The last TOTP time step accepted: a code is only accepted for a later step, so the
    # same code (or an older one) can never be used twice.
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Rotated whenever credentials, roles or status change; sessions carry it and die
    # when it no longer matches.
    session_stamp: Mapped[str] = mapped_column(String(32), default=new_id)
    password_changed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StaffUserRole(Base):
    __tablename__ = "iam_staff_user_role"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("iam_staff_user.id"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class ApiClient(Base):
    __tablename__ = "iam_api_client"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("iam_org_unit.id"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    # SHA-256 of a 32-byte random secret: no slow hash needed for that much entropy.
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "iam_api_token"

    # The SHA-256 of the opaque bearer token is the key: verifying a request is one
    # primary-key lookup, and a stolen table holds no usable token.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[str] = mapped_column(String(32), ForeignKey("iam_api_client.id"))
    scopes: Mapped[list[Any]]
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_iam_api_token_client", "client_pk"),
        Index("ix_iam_api_token_expires", "expires_at"),
    )
