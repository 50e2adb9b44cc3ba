"""Customers as TM Forum resources: TMF632 Individual / Organization, TMF629 Customer,
TMF666 BillingAccount — the mapping both ways, used by ``customers.api``.

Outwards, a resource carries only attributes with a source in our data (docs/tmf/): no
invented status, no name split we cannot make reliably. Personal data leaves masked, as
the services give it (names, mobiles, e-mails, ID numbers); organisation names and credit
codes are public. Inwards, a body is read into the arguments of the existing services;
an attribute we cannot store is refused (422 naming it), never silently dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from teleserve.core.clock import as_utc
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.customers.models import AccountKind, ContactKind, CustomerCategory
from teleserve.customers.schemas import (
    AccountRecord,
    BillingAccountView,
    ContactMediumView,
    CustomerRecord,
    PartyView,
)
from teleserve.web.tmf.resources import money_in, money_out

PARTY_API = "/tmf-api/party/v4"
CUSTOMER_API = "/tmf-api/customerManagement/v4"
ACCOUNT_API = "/tmf-api/accountManagement/v4"

# TMF mediumType ↔ our contact kinds, and the MediumCharacteristic attribute of each.
MEDIUM_TYPES = {
    ContactKind.mobile: ("mobile", "phoneNumber"),
    ContactKind.email: ("email", "emailAddress"),
    ContactKind.address: ("postalAddress", "street1"),
}
_KIND_OF_MEDIUM = {medium: (kind, attr) for kind, (medium, attr) in MEDIUM_TYPES.items()}
CREDIT_CODE_TYPE = "unifiedSocialCreditCode"  # 统一社会信用代码
PARTY_TYPES = {
    CustomerCategory.individual: "Individual",
    CustomerCategory.organisation: "Organization",
}
_CATEGORY_OF_TYPE = {name: category for category, name in PARTY_TYPES.items()}
# Attributes every resource may carry in a request without being stored.
_META = frozenset({"@type", "@baseType", "@schemaLocation"})


def timestamp(value: datetime) -> str:
    """RFC 3339 with the UTC offset (the specs' ``date-time``)."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def party_path(category: str, party_id: str) -> str:
    resource = "individual" if category == CustomerCategory.individual else "organization"
    return f"{PARTY_API}/{resource}/{party_id}"


def customer_path(customer_id: str) -> str:
    return f"{CUSTOMER_API}/customer/{customer_id}"


def account_path(account_id: str) -> str:
    return f"{ACCOUNT_API}/billingAccount/{account_id}"


# =====================================================================================
# Outwards
# =====================================================================================


_MEDIUM_ORDER = {kind: position for position, kind in enumerate(MEDIUM_TYPES)}


def contact_media(contacts: Iterable[ContactMediumView]) -> list[dict[str, Any]]:
    """The preferred medium first, then mobile, e-mail, address: one order whatever the
    rows' ids (media registered together share a timestamp)."""
    media = []
    ordered = sorted(contacts, key=lambda c: (not c.preferred, _MEDIUM_ORDER[ContactKind(c.kind)]))
    for contact in ordered:
        medium, attribute = MEDIUM_TYPES[ContactKind(contact.kind)]
        media.append(
            {
                "mediumType": medium,
                "preferred": contact.preferred,
                "characteristic": {"contactType": medium, attribute: contact.value},
            }
        )
    return media


def individual(base: str, party: PartyView) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": party.id,
        "href": base + party_path(party.category, party.id),
        "@type": "Individual",
        "fullName": party.name,
    }
    if party.gender is not None:
        resource["gender"] = party.gender
    resource["individualIdentification"] = [
        {"identificationType": d.doc_type, "identificationId": d.number_masked}
        for d in party.documents
    ]
    resource["contactMedium"] = contact_media(party.contacts)
    return resource


def organization(base: str, party: PartyView) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": party.id,
        "href": base + party_path(party.category, party.id),
        "@type": "Organization",
        "name": party.name,
    }
    if party.credit_code is not None:
        resource["organizationIdentification"] = [
            {"identificationType": CREDIT_CODE_TYPE, "identificationId": party.credit_code}
        ]
    resource["contactMedium"] = contact_media(party.contacts)
    return resource


def customer(base: str, record: CustomerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "href": base + customer_path(record.id),
        "@type": "Customer",
        "name": record.name,
        "status": record.status,
        "engagedParty": {
            "id": record.party_id,
            "href": base + party_path(record.category, record.party_id),
            "name": record.name,
            "@referredType": PARTY_TYPES[CustomerCategory(record.category)],
        },
        "account": [_account_ref(base, account) for account in record.accounts],
        "contactMedium": contact_media(record.contacts),
        "characteristic": [
            {"name": "customerNumber", "valueType": "string", "value": record.number}
        ],
        "validFor": {"startDateTime": timestamp(record.created_at)},
    }


def _account_ref(base: str, account: BillingAccountView) -> dict[str, Any]:
    return {
        "id": account.id,
        "href": base + account_path(account.id),
        "name": account.number,
        "@referredType": "BillingAccount",
    }


def billing_account(base: str, account: AccountRecord, currency: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": account.id,
        "href": base + account_path(account.id),
        "@type": "BillingAccount",
        "name": account.number,
        "accountType": account.kind,
        "state": account.status,
    }
    if account.kind == AccountKind.postpaid:
        resource["creditLimit"] = money_out(account.credit_limit, currency)
    resource["billStructure"] = {
        "cycleSpecification": {
            "isRef": False,
            "name": f"monthly-day-{account.bill_cycle_day}",
            "frequency": "monthly",
            "billingPeriod": "month",
            # The cycle starts on bill_cycle_day: that many days minus one after the
            # calendar month starts.
            "billingDateShift": account.bill_cycle_day - 1,
        }
    }
    resource["relatedParty"] = [
        {
            "id": account.customer_id,
            "href": base + customer_path(account.customer_id),
            "name": account.customer_name,
            "role": "customer",
            "@referredType": "Customer",
        }
    ]
    return resource


# =====================================================================================
# Inwards
# =====================================================================================


def refuse_unknown(body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """422 naming every attribute of ``body`` we would not store."""
    unknown = sorted(set(body) - set(allowed) - _META)
    if unknown:
        raise ValidationError(
            _("These attributes cannot be set here: {attributes}"),
            code="unsupported_attribute",
            attributes=", ".join(unknown),
        )


def check_type(body: Mapping[str, Any], expected: str) -> None:
    given = body.get("@type")
    if given is not None and given != expected:
        raise ValidationError(
            _("{field} must be {value}"), code="invalid_type", field="@type", value=expected
        )


def text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(_("{field} is required"), code="missing_field", field=key)
        return None
    if not isinstance(value, str):
        raise ValidationError(_("{field} must be text"), code="invalid_field", field=key)
    return value


def objects(body: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValidationError(
            _("{field} must be a list of objects"), code="invalid_field", field=key
        )
    return value


def an_object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(_("{field} must be an object"), code="invalid_field", field=key)
    return value


@dataclass(frozen=True)
class Contacts:
    mobile: str | None = None
    email: str | None = None
    address: str | None = None


def contacts_in(body: Mapping[str, Any], key: str = "contactMedium") -> Contacts:
    """TMF contact media → at most one mobile, e-mail and postal address."""
    found: dict[ContactKind, str] = {}
    for medium in objects(body, key):
        refuse_unknown(medium, {"mediumType", "preferred", "characteristic", "validFor"})
        medium_type = text(medium, "mediumType", required=True)
        if medium_type not in _KIND_OF_MEDIUM:
            raise ValidationError(
                _("Unknown contact medium type {medium_type}; use mobile, email or postalAddress"),
                code="medium_type",
                medium_type=medium_type,
            )
        kind, attribute = _KIND_OF_MEDIUM[medium_type]
        characteristic = an_object(medium, "characteristic") or {}
        refuse_unknown(characteristic, {attribute, "contactType"})
        value = text(characteristic, attribute, required=True)
        if kind in found:
            raise ValidationError(
                _("Give at most one contact medium of type {medium_type}"),
                code="medium_repeated",
                medium_type=medium_type,
            )
        found[kind] = value or ""
    return Contacts(
        mobile=found.get(ContactKind.mobile),
        email=found.get(ContactKind.email),
        address=found.get(ContactKind.address),
    )


def _is_cjk(value: str) -> bool:
    return all(unicodedata.name(ch, "").startswith("CJK") for ch in value)


@dataclass(frozen=True)
class PersonIn:
    name: str
    id_type: str | None
    id_number: str
    gender: str | None
    contacts: Contacts


INDIVIDUAL_FIELDS = frozenset(
    {"givenName", "familyName", "fullName", "gender", "individualIdentification", "contactMedium"}
)


def person_name(body: Mapping[str, Any], fallback: str | None = None) -> str:
    """``fullName``, else ``familyName`` + ``givenName`` (Chinese order, no space, when
    both are Chinese; ``givenName familyName`` otherwise), else ``fallback``."""
    full = text(body, "fullName")
    family = text(body, "familyName")
    given = text(body, "givenName")
    if full and full.strip():
        return full
    if family and given:
        family, given = family.strip(), given.strip()
        return family + given if _is_cjk(family + given) else f"{given} {family}"
    if fallback:
        return fallback
    raise ValidationError(
        _("Give the person's fullName, or familyName and givenName"), code="name_missing"
    )


def individual_in(body: Mapping[str, Any], fallback_name: str | None = None) -> PersonIn:
    refuse_unknown(body, INDIVIDUAL_FIELDS)
    check_type(body, "Individual")
    documents = objects(body, "individualIdentification")
    if len(documents) != 1:
        raise ValidationError(
            _("Give exactly one identity document in individualIdentification"),
            code="id_number_missing",
        )
    (document,) = documents
    refuse_unknown(document, {"identificationType", "identificationId"})
    number = text(document, "identificationId", required=True)
    return PersonIn(
        name=person_name(body, fallback_name),
        id_type=text(document, "identificationType"),
        id_number=number or "",
        gender=text(body, "gender"),
        contacts=contacts_in(body),
    )


@dataclass(frozen=True)
class OrganizationIn:
    name: str
    credit_code: str
    contacts: Contacts


ORGANIZATION_FIELDS = frozenset(
    {"name", "tradingName", "organizationIdentification", "contactMedium"}
)


def organization_in(body: Mapping[str, Any], fallback_name: str | None = None) -> OrganizationIn:
    refuse_unknown(body, ORGANIZATION_FIELDS)
    check_type(body, "Organization")
    name = text(body, "name")
    trading = text(body, "tradingName")
    if name and trading and " ".join(name.split()) != " ".join(trading.split()):
        raise ValidationError(
            _("name and tradingName differ; an organisation has one name here"),
            code="name_mismatch",
        )
    chosen = name or trading or fallback_name
    if not chosen:
        raise ValidationError(_("{field} is required"), code="missing_field", field="tradingName")
    identifications = objects(body, "organizationIdentification")
    if len(identifications) != 1:
        raise ValidationError(
            _("Give exactly one unified social credit code in organizationIdentification"),
            code="credit_code_missing",
        )
    (identification,) = identifications
    refuse_unknown(identification, {"identificationType", "identificationId"})
    kind = text(identification, "identificationType")
    if kind not in (None, CREDIT_CODE_TYPE):
        raise ValidationError(
            _("{field} must be {value}"),
            code="invalid_field",
            field="identificationType",
            value=CREDIT_CODE_TYPE,
        )
    code = text(identification, "identificationId", required=True)
    return OrganizationIn(name=chosen, credit_code=code or "", contacts=contacts_in(body))


def category_of(reference: Mapping[str, Any]) -> CustomerCategory:
    """The party category a reference or value names by ``@referredType`` or ``@type``."""
    named = reference.get("@referredType") or reference.get("@type")
    if named not in _CATEGORY_OF_TYPE:
        raise ValidationError(
            _("{field} must be Individual or Organization"),
            code="invalid_field",
            field="engagedParty.@referredType",
        )
    return _CATEGORY_OF_TYPE[named]


@dataclass(frozen=True)
class AccountIn:
    customer_id: str
    kind: str
    credit_limit: int
    bill_cycle_day: int


ACCOUNT_FIELDS = frozenset(
    {"name", "relatedParty", "accountType", "creditLimit", "billStructure", "state"}
)


def account_in(body: Mapping[str, Any], currency: str) -> AccountIn:
    """A TMF666 BillingAccount_Create → the arguments of ``open_billing_account``. The
    ``name`` is assigned by us (the account number); a name given is not stored."""
    refuse_unknown(body, ACCOUNT_FIELDS)
    check_type(body, "BillingAccount")
    owners = [p for p in objects(body, "relatedParty") if p.get("role", "customer") == "customer"]
    if len(owners) != 1 or owners[0].get("@referredType", "Customer") != "Customer":
        raise ValidationError(
            _("relatedParty must name exactly one Customer (role customer) owning the account"),
            code="owner_missing",
        )
    owner = text(owners[0], "id", required=True) or ""
    state = text(body, "state")
    if state not in (None, "active"):
        raise ValidationError(
            _("{field} must be {value}"), code="invalid_field", field="state", value="active"
        )
    kind = text(body, "accountType") or AccountKind.prepaid
    credit_limit = 0
    if body.get("creditLimit") is not None:
        credit_limit = money_in(body["creditLimit"], currency, "creditLimit")
    return AccountIn(owner, kind, credit_limit, bill_cycle_day_in(body))


def bill_cycle_day_in(body: Mapping[str, Any]) -> int:
    structure = an_object(body, "billStructure") or {}
    refuse_unknown(structure, {"cycleSpecification"})
    cycle = an_object(structure, "cycleSpecification") or {}
    refuse_unknown(
        cycle, {"isRef", "name", "frequency", "billingPeriod", "billingDateShift", "id", "href"}
    )
    for key, expected in (("frequency", "monthly"), ("billingPeriod", "month")):
        value = cycle.get(key)
        if value is not None and value != expected:
            raise ValidationError(
                _("{field} must be {value}"), code="invalid_field", field=key, value=expected
            )
    shift = cycle.get("billingDateShift", 0)
    if isinstance(shift, bool) or not isinstance(shift, int):
        raise ValidationError(
            _("{field} must be a whole number"), code="invalid_field", field="billingDateShift"
        )
    # open_billing_account checks the day's range (1 to 28) and says so.
    return shift + 1


def unchanged_or_refuse(
    body: Mapping[str, Any], current: Mapping[str, Any], patchable: Iterable[str]
) -> None:
    """A merge PATCH may repeat what a GET gave (a client sending the resource back with
    one change); any other attribute outside ``patchable`` is refused with its name."""
    allowed = set(patchable)
    refused = sorted(
        key
        for key, value in body.items()
        if key not in allowed and key not in _META and current.get(key) != value
    )
    if refused:
        raise ValidationError(
            _("These attributes cannot be changed: {attributes}"),
            code="not_patchable",
            attributes=", ".join(refused),
        )
