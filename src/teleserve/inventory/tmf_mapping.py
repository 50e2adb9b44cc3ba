"""TMF637 shape of a line (subscription, 用户): the ``product`` resource.

- ``status``: pending -> ``pendingActive``; active -> ``active``, or ``suspended`` while
  it has an open bar (停机); terminated -> ``terminated``. The bars themselves are the
  ``bars`` productCharacteristic (type and since when; free-text reasons stay inside).
- ``productSerialNumber``: the service number, unmasked (docs/tmf/TMF637-product-
  inventory.md explains why an integration of the owning operator gets it whole).
- ``productOffering`` / ``productSpecification``: the plan (catalog ids); its prices are
  ``productPrice`` with refs to the TMF620 productOfferingPrice resources.
- VAS: child products in ``product`` (values, not addressable on their own), each with
  its offering, start date and prices; ``isBundle`` says whether there are any.
- ``relatedParty``: the customer (TMF629); ``billingAccount``: the account (TMF666).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from teleserve.catalog.schemas import OfferingOut, PriceType, price_components
from teleserve.core.clock import as_utc
from teleserve.inventory.schemas import SubscriptionOut, SubscriptionStatus

BASE = "/tmf-api/productInventory/v4"
CATALOG_BASE = "/tmf-api/productCatalogManagement/v4"
CUSTOMER_BASE = "/tmf-api/customerManagement/v4"
ACCOUNT_BASE = "/tmf-api/accountManagement/v4"

# TMF637 ProductStatusType <-> the service's ``state`` filter values.
STATUS_IN: Mapping[str, str] = {
    "pendingActive": "pending",
    "active": "active",
    "suspended": "suspended",
    "terminated": "terminated",
}


def iso(value: datetime) -> str:
    return as_utc(value).isoformat()


def _path(base: str, resource: str, resource_id: str) -> str:
    return f"{base}/{resource}/{quote(resource_id, safe='')}"


def status_of(line: SubscriptionOut) -> str:
    if line.status is SubscriptionStatus.pending:
        return "pendingActive"
    if line.status is SubscriptionStatus.terminated:
        return "terminated"
    return "suspended" if line.bars else "active"


def _offering_name(offering: OfferingOut, locale: str) -> str:
    return offering.name_en if locale == "en" else offering.name_zh


def _prices(root: str, offering: OfferingOut, currency: str) -> list[dict[str, Any]]:
    prices = []
    for price in price_components(offering):
        # Fen -> yuan; a usage rate keeps the decimals it has (2.93 fen/MB is 0.0293).
        value = float(price.amount.scaleb(-2))
        item: dict[str, Any] = {
            "priceType": str(price.price_type),
            "price": {"taxIncludedAmount": {"unit": currency, "value": value}},
            "productOfferingPrice": {
                "id": price.id,
                "href": root + _path(CATALOG_BASE, "productOfferingPrice", price.id),
                "@referredType": "ProductOfferingPrice",
            },
        }
        if price.price_type is PriceType.recurring:
            item["recurringChargePeriod"] = "month"
        if price.unit is not None:
            item["unitOfMeasure"] = price.unit
        prices.append(item)
    return prices


def _offering_refs(root: str, offering: OfferingOut, locale: str) -> dict[str, Any]:
    name = _offering_name(offering, locale)
    return {
        "productOffering": {
            "id": offering.id,
            "href": root + _path(CATALOG_BASE, "productOffering", offering.id),
            "name": name,
            "@referredType": "ProductOffering",
        },
        "productSpecification": {
            "id": offering.id,
            "href": root + _path(CATALOG_BASE, "productSpecification", offering.id),
            "name": name,
            "@referredType": "ProductSpecification",
        },
    }


def product(
    root: str,
    line: SubscriptionOut,
    offerings: Mapping[str, OfferingOut],
    currency: str,
    locale: str,
) -> dict[str, Any]:
    """``root``: the server's base URL; ``offerings``: the plan and VAS offerings by code
    (one the caller may not read is left out rather than guessed)."""
    status = status_of(line)
    resource: dict[str, Any] = {
        "id": line.id,
        "href": root + _path(BASE, "product", line.id),
        "@type": "Product",
        "productSerialNumber": line.service_number,
        "status": status,
        "isBundle": bool(line.vas),
    }
    plan = offerings.get(line.plan_code)
    if plan is not None:
        resource["name"] = _offering_name(plan, locale)
        resource.update(_offering_refs(root, plan, locale))
        resource["productPrice"] = _prices(root, plan, currency)
    if line.activated_at is not None:
        resource["startDate"] = iso(line.activated_at)
    if line.terminated_at is not None:
        resource["terminationDate"] = iso(line.terminated_at)
    resource["relatedParty"] = [
        {
            "id": line.customer_id,
            "href": root + _path(CUSTOMER_BASE, "customer", line.customer_id),
            "role": "customer",
            "@referredType": "Customer",
        }
    ]
    resource["billingAccount"] = {
        "id": line.billing_account_id,
        "href": root + _path(ACCOUNT_BASE, "billingAccount", line.billing_account_id),
        "@referredType": "BillingAccount",
    }
    characteristics: list[dict[str, Any]] = [
        {"name": "lineKind", "valueType": "string", "value": str(line.kind)},
        {"name": "accountType", "valueType": "string", "value": line.account_type},
    ]
    if line.bars:
        characteristics.append(
            {
                "name": "bars",
                "valueType": "array",
                "value": [{"bar": str(b.bar), "placedAt": iso(b.placed_at)} for b in line.bars],
            }
        )
    resource["productCharacteristic"] = characteristics
    children = []
    for vas in line.vas:
        child: dict[str, Any] = {"@type": "Product", "status": status, "isBundle": False}
        child["startDate"] = iso(vas.start_at)
        offering = offerings.get(vas.code)
        if offering is not None:
            child["name"] = _offering_name(offering, locale)
            child.update(_offering_refs(root, offering, locale))
            child["productPrice"] = _prices(root, offering, currency)
        children.append(child)
    if children:
        resource["product"] = children
    return resource
