"""Input and output models of the customers domain (pydantic v2).

Outputs never carry personal data in clear: individuals' names, mobile numbers, e-mail
addresses and ID numbers are masked (DESIGN.md section 5); the full ID number is only
returned by ``service.reveal_id_number`` (permission ``customers.read_sensitive``,
audited). Organisation names and credit codes are public and shown as they are.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from teleserve.customers.models import AccountKind, CustomerCategory


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- inputs ----------------------------------------------------------------------------


class AccountSpec(_Frozen):
    """A billing account to open with a customer."""

    kind: AccountKind = AccountKind.prepaid
    credit_limit: int = 0  # fen; postpaid only
    bill_cycle_day: int = 1


class ServiceNumberSpec(_Frozen):
    """A service number owned by the customer, with an optional *precomputed* password
    hash (``passwords.hash_password``): the seed hashes one password once, not per row."""

    service_number: str
    password_hash: str | None = None


class CustomerRegistration(_Frozen):
    """One customer to register (``register_customers_batch``)."""

    category: CustomerCategory
    name: str
    org_unit_id: str
    org_path: str
    # Individuals: an identity document (the type defaults to the resident ID card).
    id_type: str | None = None
    id_number: str | None = None
    gender: str | None = None
    # Organisations: the unified social credit code.
    credit_code: str | None = None
    mobile: str | None = None
    email: str | None = None
    address: str | None = None
    accounts: tuple[AccountSpec, ...] = ()
    service_numbers: tuple[ServiceNumberSpec, ...] = ()


# -- outputs ---------------------------------------------------------------------------


class Registered(_Frozen):
    customer_id: str
    number: str
    account_ids: tuple[str, ...] = ()
    account_numbers: tuple[str, ...] = ()
    # The identity document's blind index (``crypto.blind_index``, never the number), as
    # ``numbers.assign`` takes it for the real-name rule; ``None`` for organisations.
    id_index: str | None = None


class ContactMediumView(_Frozen):
    id: str
    kind: str
    value: str  # masked for mobile and e-mail
    preferred: bool


class IdentityDocumentView(_Frozen):
    id: str
    doc_type: str
    number_masked: str


class BillingAccountView(_Frozen):
    id: str
    number: str
    customer_id: str
    kind: str
    status: str
    credit_limit: int
    bill_cycle_day: int
    org_path: str
    created_at: datetime
    closed_at: datetime | None = None


class CustomerSummary(_Frozen):
    id: str
    number: str
    category: str
    status: str
    name: str  # masked for individuals
    org_unit_id: str
    org_path: str
    created_at: datetime


class CustomerDetail(CustomerSummary):
    gender: str | None = None
    credit_code: str | None = None
    documents: tuple[IdentityDocumentView, ...] = ()
    contacts: tuple[ContactMediumView, ...] = ()
    accounts: tuple[BillingAccountView, ...] = ()
    service_numbers: tuple[str, ...] = Field(default=(), description="masked")


class CustomerToken(_Frozen):
    """What a successful customer login returns (PROTOCOL.md 1001)."""

    token: str  # 256 random bits, hex; only its SHA-256 is stored
    level: int
    expires_in_s: int
    customer_id: str
    service_number: str
    customer_name: str  # masked
    factors: tuple[str, ...]


class CustomerAuth(_Frozen):
    """A valid customer session, as ``check_token`` returns it to other domains."""

    session_id: str
    customer_id: str
    service_number: str
    org_path: str
    level: int
    factors: tuple[str, ...]
    expires_at: datetime


class OtpSent(_Frozen):
    """The answer to OTP_SEND: the same whether or not the number exists."""

    expires_in_s: int


class PartyView(_Frozen):
    """The party (TMF632 individual or organization) of a customer: who they are."""

    id: str  # the party row's own id (cust_individual / cust_organization)
    customer_id: str
    category: str
    name: str  # masked for individuals
    gender: str | None = None
    credit_code: str | None = None  # organisations: public, shown in full
    documents: tuple[IdentityDocumentView, ...] = ()
    contacts: tuple[ContactMediumView, ...] = ()
    org_path: str
    created_at: datetime


class CustomerRecord(CustomerSummary):
    """A customer with what a list row of an integrator needs: its party's id, contact
    media (masked) and billing accounts — loaded for a whole page in a few queries."""

    party_id: str
    contacts: tuple[ContactMediumView, ...] = ()
    accounts: tuple[BillingAccountView, ...] = ()


class AccountRecord(BillingAccountView):
    """A billing account with its owner's (masked) name, for references to the owner."""

    customer_name: str
