"""TMF620 shapes of the catalog: our offerings as catalog, category, productOffering,
productSpecification and productOfferingPrice resources, and TMF productOffering bodies
(POST / merge PATCH) as ``OfferingSpec`` / ``OfferingChanges`` input.

How our data maps (docs/tmf/TMF620-product-catalog.md has the full table):
- one ``catalog``: the operator's catalog, which is operator-wide;
- ``category``: the offering kinds (plan, vas, broadband, fixed_line) as root categories,
  and each free-text category in use under a kind (``vas.data``) as a subcategory;
- ``productOffering``: an offering (``code`` is a documented extension);
- ``productSpecification``: derived one-to-one from an offering (same id): its kind and
  monthly allowances as characteristics, its code as ``productNumber``;
- ``productOfferingPrice``: one per price an offering has (``catalog.schemas.
  price_components``), id ``<offering id>-<price key>``.
Only attributes with a source are written; nothing is invented to fill the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from teleserve.catalog.schemas import (
    USAGE_RATES,
    AccountType,
    CustomerCategory,
    OfferingKind,
    OfferingOut,
    OfferingStatus,
    PriceComponent,
    PriceType,
    price_components,
)
from teleserve.core.clock import as_utc
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _, translate
from teleserve.core.query import parse_datetime
from teleserve.web.tmf.resources import money_in, money_out

BASE = "/tmf-api/productCatalogManagement/v4"
CATALOG_ID = "operator"

# Our lifecycle <-> TMF620 lifecycleStatus (the values of the TMF620 user guide).
LIFECYCLE_OUT: Mapping[OfferingStatus, str] = {
    OfferingStatus.draft: "In design",
    OfferingStatus.active: "Active",
    OfferingStatus.retired: "Retired",
}
LIFECYCLE_IN: Mapping[str, OfferingStatus] = {v: k for k, v in LIFECYCLE_OUT.items()}

KIND_NAMES: Mapping[OfferingKind, str] = {
    OfferingKind.plan: _("Mobile plans"),
    OfferingKind.vas: _("Value-added services"),
    OfferingKind.broadband: _("Broadband"),
    OfferingKind.fixed_line: _("Fixed line"),
}
PRICE_NAMES: Mapping[str, str] = {
    "recurring": _("{offering}: monthly fee"),
    "oneTime": _("{offering}: one-time fee"),
    "usage-voice": _("{offering}: voice beyond the allowance"),
    "usage-data": _("{offering}: data beyond the allowance"),
    "usage-sms": _("{offering}: SMS beyond the allowance"),
}
# Monthly allowances as productSpecification characteristics (and, on input, as
# prodSpecCharValueUse): TMF name -> (our field, unit).
ALLOWANCES: Mapping[str, tuple[str, str]] = {
    "monthlyVoiceMinutes": ("voice_minutes", "min"),
    "monthlyDataMB": ("data_mb", "MB"),
    "monthlySMS": ("sms_count", "SMS"),
}
SEGMENTS: Mapping[str, tuple[str, str]] = {
    **{str(c): ("customer_categories", str(c)) for c in CustomerCategory},
    **{str(a): ("account_types", str(a)) for a in AccountType},
}
SEGMENT_NAMES: Mapping[str, str] = {
    "individual": _("Individual customers"),
    "organisation": _("Organisation customers"),
    "prepaid": _("Prepaid accounts"),
    "postpaid": _("Postpaid accounts"),
}


def iso(value: datetime) -> str:
    return as_utc(value).isoformat()


def _path(resource: str, resource_id: str) -> str:
    return f"{BASE}/{resource}/{quote(resource_id, safe='')}"


def localized(offering: OfferingOut, field: str, locale: str) -> str:
    value: str = getattr(offering, f"{field}_en" if locale == "en" else f"{field}_zh")
    return value


def _valid_for(offering: OfferingOut) -> dict[str, str] | None:
    period = {}
    if offering.valid_from is not None:
        period["startDateTime"] = iso(offering.valid_from)
    if offering.valid_to is not None:
        period["endDateTime"] = iso(offering.valid_to)
    return period or None


# -- catalog and categories --------------------------------------------------------------


def category_id(kind: str, category: str = "") -> str:
    return f"{kind}.{category}" if category else kind


def category_ref(base: str, kind: str, category: str, locale: str) -> dict[str, Any]:
    cid = category_id(kind, category)
    name = category or translate(KIND_NAMES[OfferingKind(kind)], locale)
    return {
        "id": cid,
        "href": base + _path("category", cid),
        "name": name,
        "@referredType": "Category",
    }


def categories(
    base: str, in_use: Iterable[tuple[str, str, datetime]], locale: str
) -> list[dict[str, Any]]:
    """Every root category (each offering kind, in use or not) followed by its
    subcategories (the free-text categories in use under it)."""
    by_kind: dict[str, list[tuple[str, datetime]]] = {str(k): [] for k in OfferingKind}
    for kind, category, updated in in_use:
        by_kind.setdefault(kind, []).append((category, updated))
    out: list[dict[str, Any]] = []
    for kind in OfferingKind:
        entries = by_kind[str(kind)]
        subs = sorted({c for c, _u in entries if c})
        root: dict[str, Any] = {
            "id": str(kind),
            "href": base + _path("category", str(kind)),
            "@type": "Category",
            "name": translate(KIND_NAMES[kind], locale),
            "isRoot": True,
        }
        if entries:
            root["lastUpdate"] = iso(max(u for _c, u in entries))
        if subs:
            root["subCategory"] = [category_ref(base, str(kind), c, locale) for c in subs]
        out.append(root)
        for sub in subs:
            cid = category_id(str(kind), sub)
            out.append(
                {
                    "id": cid,
                    "href": base + _path("category", cid),
                    "@type": "Category",
                    "name": sub,
                    "isRoot": False,
                    "parentId": str(kind),
                    "lastUpdate": iso(max(u for c, u in entries if c == sub)),
                }
            )
    return out


def catalog(base: str, in_use: Iterable[tuple[str, str, datetime]], locale: str) -> dict[str, Any]:
    rows = list(in_use)
    resource: dict[str, Any] = {
        "id": CATALOG_ID,
        "href": base + _path("catalog", CATALOG_ID),
        "@type": "Catalog",
        "name": translate(_("Product catalog"), locale),
        "category": [category_ref(base, str(k), "", locale) for k in OfferingKind],
    }
    if rows:
        resource["lastUpdate"] = iso(max(u for _k, _c, u in rows))
    return resource


# -- offerings, specifications, prices ---------------------------------------------------


def _offering_ref(base: str, offering: OfferingOut, locale: str) -> dict[str, Any]:
    return {
        "id": offering.id,
        "href": base + _path("productOffering", offering.id),
        "name": localized(offering, "name", locale),
        "@referredType": "ProductOffering",
    }


def price_name(price: PriceComponent, offering: OfferingOut, locale: str) -> str:
    return translate(PRICE_NAMES[price.key], locale, offering=localized(offering, "name", locale))


def price_ref(
    base: str, price: PriceComponent, offering: OfferingOut, locale: str
) -> dict[str, Any]:
    return {
        "id": price.id,
        "href": base + _path("productOfferingPrice", price.id),
        "name": price_name(price, offering, locale),
        "@referredType": "ProductOfferingPrice",
    }


def price_money(price: PriceComponent, currency: str) -> dict[str, Any]:
    """Fees are whole fen; a usage rate is an exact fraction of a fen per unit, shown in
    yuan with the decimals it needs (2.93 fen per MB is 0.0293)."""
    if price.price_type is PriceType.usage:
        return {"unit": currency, "value": float(price.amount.scaleb(-2))}
    return money_out(int(price.amount), currency)


def product_offering(
    base: str,
    offering: OfferingOut,
    related: Mapping[str, OfferingOut],
    locale: str,
) -> dict[str, Any]:
    """``related``: the offerings named by ``requires_plans`` / ``excludes``, by code."""
    resource: dict[str, Any] = {
        "id": offering.id,
        "href": base + _path("productOffering", offering.id),
        "@type": "ProductOffering",
        "code": offering.code,
        "name": localized(offering, "name", locale),
        "lifecycleStatus": LIFECYCLE_OUT[offering.status],
        "lastUpdate": iso(offering.updated_at),
        "isBundle": False,
    }
    description = localized(offering, "description", locale)
    if description:
        resource["description"] = description
    period = _valid_for(offering)
    if period:
        resource["validFor"] = period
    resource["category"] = [category_ref(base, str(offering.kind), "", locale)]
    if offering.category:
        resource["category"].append(
            category_ref(base, str(offering.kind), offering.category, locale)
        )
    resource["productSpecification"] = {
        "id": offering.id,
        "href": base + _path("productSpecification", offering.id),
        "name": localized(offering, "name", locale),
        "@referredType": "ProductSpecification",
    }
    resource["productOfferingPrice"] = [
        price_ref(base, p, offering, locale) for p in price_components(offering)
    ]
    segments = [*offering.customer_categories, *offering.account_types]
    if segments:
        resource["marketSegment"] = [
            {
                "id": str(s),
                "name": translate(SEGMENT_NAMES[str(s)], locale),
                "@referredType": "MarketSegment",
            }
            for s in segments
        ]
    if offering.regions:
        resource["place"] = [
            {"id": region, "@referredType": "OrganisationUnit"} for region in offering.regions
        ]
    relationships = [
        {**_offering_ref(base, related[code], locale), "relationshipType": kind}
        for kind, codes in (("requires", offering.requires_plans), ("excludes", offering.excludes))
        for code in codes
        if code in related
    ]
    if relationships:
        resource["productOfferingRelationship"] = relationships
    return resource


def product_specification(base: str, offering: OfferingOut, locale: str) -> dict[str, Any]:
    characteristics: list[dict[str, Any]] = [
        {
            "name": "offeringKind",
            "valueType": "string",
            "configurable": False,
            "productSpecCharacteristicValue": [{"value": str(offering.kind), "isDefault": True}],
        }
    ]
    for name, (field, unit) in ALLOWANCES.items():
        amount = getattr(offering, field)
        if amount:
            characteristics.append(
                {
                    "name": name,
                    "valueType": "integer",
                    "configurable": False,
                    "productSpecCharacteristicValue": [
                        {"value": amount, "unitOfMeasure": unit, "isDefault": True}
                    ],
                }
            )
    resource: dict[str, Any] = {
        "id": offering.id,
        "href": base + _path("productSpecification", offering.id),
        "@type": "ProductSpecification",
        "name": localized(offering, "name", locale),
        "productNumber": offering.code,
        "lifecycleStatus": LIFECYCLE_OUT[offering.status],
        "lastUpdate": iso(offering.updated_at),
        "isBundle": False,
        "productSpecCharacteristic": characteristics,
    }
    description = localized(offering, "description", locale)
    if description:
        resource["description"] = description
    period = _valid_for(offering)
    if period:
        resource["validFor"] = period
    return resource


def product_offering_price(
    base: str, price: PriceComponent, offering: OfferingOut, currency: str, locale: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": price.id,
        "href": base + _path("productOfferingPrice", price.id),
        "@type": "ProductOfferingPrice",
        "name": price_name(price, offering, locale),
        "priceType": str(price.price_type),
        "price": price_money(price, currency),
        "lifecycleStatus": LIFECYCLE_OUT[offering.status],
        "lastUpdate": iso(offering.updated_at),
        "isBundle": False,
    }
    if price.price_type is PriceType.recurring:
        resource["recurringChargePeriodType"] = "month"
        resource["recurringChargePeriodLength"] = 1
    if price.unit is not None:
        resource["unitOfMeasure"] = {"amount": 1, "units": price.unit}
    period = _valid_for(offering)
    if period:
        resource["validFor"] = period
    return resource


def split_price_id(price_id: str) -> tuple[str, str]:
    """``<offering id>-<price key>`` -> (offering id, key); offering ids are hex."""
    offering_id, _dash, key = price_id.partition("-")
    return offering_id, key


# -- input: productOffering bodies -------------------------------------------------------


class Refused(ValidationError):
    default_code = "invalid_attribute"


# Read-only or metadata attributes a client may echo back; ignored when they match.
_IGNORED = frozenset({"@type", "@baseType", "@schemaLocation"})
_NOT_SETTABLE = _("The attribute {attribute} cannot be set through this API")


def _need(value: Any, kind: type, attribute: str) -> Any:
    if not isinstance(value, kind):
        raise Refused(_("Invalid value for {attribute}"), attribute=attribute)
    return value


def _refs(value: Any, attribute: str) -> list[dict[str, Any]]:
    items = _need(value, list, attribute)
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise Refused(_("Each {attribute} needs an id"), attribute=attribute)
    return list(items)


def _datetime(value: Any, attribute: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(_need(value, str, attribute))
    except ValueError:
        raise Refused(_("Invalid value for {attribute}"), attribute=attribute) from None


def _kind_and_category(value: Any) -> tuple[str, str]:
    refs = _refs(value, "category")
    kinds = {r["id"].partition(".")[0] for r in refs}
    subs = {r["id"].partition(".")[2] for r in refs} - {""}
    if len(kinds) != 1 or kinds.pop() not in set(OfferingKind) or len(subs) > 1:
        raise Refused(
            _("category names one offering kind ({kinds}) and at most one of its subcategories"),
            kinds=", ".join(OfferingKind),
        )
    kind = refs[0]["id"].partition(".")[0]
    return kind, subs.pop() if subs else ""


def _prices(value: Any, currency: str) -> dict[str, Any]:
    """A full list of prices (merge patch replaces arrays): what is not listed is none."""
    out: dict[str, Any] = {
        "monthly_fee": 0,
        "one_time_fee": 0,
        **{rate: Decimal(0) for _s, rate, _a, _u in USAGE_RATES},
    }
    seen: set[str] = set()
    units = {unit: rate for _s, rate, _a, unit in USAGE_RATES}
    for item in _need(value, list, "productOfferingPrice"):
        item = _need(item, dict, "productOfferingPrice")
        price_type = item.get("priceType")
        amount = _need(item.get("price"), dict, "productOfferingPrice.price")
        if set(amount) - {"taxIncludedAmount", "@type"}:
            raise Refused(
                _("Prices are tax-included: give productOfferingPrice.price.taxIncludedAmount")
            )
        money = amount.get("taxIncludedAmount")
        if price_type == "recurring":
            field = "monthly_fee"
            fen: Any = money_in(money, currency, "productOfferingPrice.price")
        elif price_type == "oneTime":
            field = "one_time_fee"
            fen = money_in(money, currency, "productOfferingPrice.price")
        elif price_type == "usage":
            unit = _need(item.get("unitOfMeasure"), dict, "productOfferingPrice.unitOfMeasure")
            field = units.get(unit.get("units"), "")
            if not field:
                raise Refused(
                    _("A usage price is per unit: unitOfMeasure.units is one of {units}"),
                    units=", ".join(units),
                )
            fen = _rate_in(money, currency)
        else:
            raise Refused(_("priceType is one of recurring, oneTime, usage"), attribute="priceType")
        if field in seen:
            raise Refused(_("Each kind of price can be given once"))
        seen.add(field)
        out[field] = fen
    return out


def _rate_in(money: Any, currency: str) -> Decimal:
    """A usage rate in yuan per unit -> fen per unit, exact: unlike an amount it may have
    more than two decimals (the service limits them)."""
    attribute = "productOfferingPrice.price"
    money = _need(money, dict, attribute)
    if money.get("unit", currency) != currency:
        raise Refused(_("{field} must be in {currency}"), field=attribute, currency=currency)
    value = money.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused(_("Invalid value for {attribute}"), attribute=attribute)
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise Refused(_("Invalid value for {attribute}"), attribute=attribute) from None
    if not rate.is_finite():
        raise Refused(_("Invalid value for {attribute}"), attribute=attribute)
    return rate.scaleb(2)


def _allowances(value: Any) -> dict[str, int]:
    out = {field: 0 for field, _unit in ALLOWANCES.values()}
    for item in _need(value, list, "prodSpecCharValueUse"):
        item = _need(item, dict, "prodSpecCharValueUse")
        name = item.get("name")
        if name not in ALLOWANCES:
            raise Refused(
                _("prodSpecCharValueUse.name is one of {names}"), names=", ".join(ALLOWANCES)
            )
        values = _need(item.get("productSpecCharacteristicValue"), list, name)
        if len(values) != 1 or not isinstance(values[0], dict):
            raise Refused(_("Give one value for {attribute}"), attribute=name)
        amount = values[0].get("value")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise Refused(_("Invalid value for {attribute}"), attribute=name)
        out[ALLOWANCES[name][0]] = amount
    return out


def _segments(value: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"customer_categories": [], "account_types": []}
    for ref in _refs(value, "marketSegment"):
        if ref["id"] not in SEGMENTS:
            raise Refused(_("marketSegment.id is one of {segments}"), segments=", ".join(SEGMENTS))
        field, segment = SEGMENTS[ref["id"]]
        out[field].append(segment)
    return out


def offering_input(
    body: Mapping[str, Any],
    *,
    locale: str,
    currency: str,
    codes_of: Callable[[Sequence[Mapping[str, Any]]], list[str]],
    creating: bool,
) -> tuple[dict[str, Any], OfferingStatus | None, str]:
    """A TMF productOffering body -> (service fields, lifecycle target, status reason).

    ``codes_of(refs)`` turns productOfferingRelationship refs (offering ids or codes) into
    offering codes. ``name`` / ``description`` are in the request's language; the
    extensions ``nameZh``, ``nameEn``, ``descriptionZh``, ``descriptionEn`` set either
    language explicitly. Any attribute not listed here is refused, never dropped."""
    suffix = "en" if locale == "en" else "zh"
    fields: dict[str, Any] = {}
    target: OfferingStatus | None = None
    reason = ""
    for attribute, value in body.items():
        if attribute in _IGNORED:
            continue
        if attribute in ("name", "description"):
            fields[f"{attribute}_{suffix}"] = _need(value, str, attribute)
        elif attribute in ("nameZh", "nameEn", "descriptionZh", "descriptionEn"):
            base_name = "name" if attribute.startswith("name") else "description"
            fields[f"{base_name}_{attribute[-2:].lower()}"] = _need(value, str, attribute)
        elif attribute == "code" and creating:
            fields["code"] = _need(value, str, attribute)
        elif attribute == "category":
            kind, category = _kind_and_category(value)
            fields["kind"] = kind
            fields["category"] = category
        elif attribute == "lifecycleStatus":
            if value not in LIFECYCLE_IN:
                raise Refused(
                    _("lifecycleStatus is one of {values}"), values=", ".join(LIFECYCLE_IN)
                )
            target = LIFECYCLE_IN[value]
        elif attribute == "statusReason":
            reason = _need(value, str, attribute)
        elif attribute == "validFor":
            period = _need(value, dict, attribute) if value is not None else {}
            unknown = set(period) - {"startDateTime", "endDateTime"}
            if unknown:
                raise Refused(_NOT_SETTABLE, attribute=f"validFor.{min(unknown)}")
            if value is None or "startDateTime" in period:
                fields["valid_from"] = _datetime(period.get("startDateTime"), "validFor")
            if value is None or "endDateTime" in period:
                fields["valid_to"] = _datetime(period.get("endDateTime"), "validFor")
        elif attribute == "productOfferingPrice":
            fields.update(_prices(value, currency))
        elif attribute == "prodSpecCharValueUse":
            fields.update(_allowances(value))
        elif attribute == "marketSegment":
            fields.update(_segments(value))
        elif attribute == "place":
            fields["regions"] = [r["id"] for r in _refs(value, attribute)]
        elif attribute == "productOfferingRelationship":
            refs = _refs(value, attribute)
            kinds = {r.get("relationshipType") for r in refs}
            if not kinds <= {"requires", "excludes"}:
                raise Refused(_("relationshipType is one of requires, excludes"))
            for kind, field in (("requires", "requires_plans"), ("excludes", "excludes")):
                fields[field] = codes_of([r for r in refs if r.get("relationshipType") == kind])
        elif attribute == "isBundle" and value is False:
            continue
        else:
            raise Refused(_NOT_SETTABLE, attribute=attribute)
    if reason and target is not OfferingStatus.retired:
        raise Refused(_("statusReason is given only when retiring an offering"))
    return fields, target, reason
