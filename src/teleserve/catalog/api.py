"""TMF620 Product Catalog Management at ``/tmf-api/productCatalogManagement/v4/``.

Reads (``catalog.read``): catalog, category, productOffering, productSpecification and
productOfferingPrice, list and by id. Writes (``catalog.write``, which only the
operator's root — or a region for offerings sold only inside it — may use, as the
service enforces): POST productOffering, and merge PATCH of a productOffering whose
``lifecycleStatus`` moves it through draft -> active -> retired. Everything else of the
spec (POST / PATCH / DELETE of the derived resources, DELETE productOffering — an
offering is retired, never deleted — import / export jobs, the hub) is not routed:
docs/tmf/TMF620-product-catalog.md says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from teleserve.catalog import service
from teleserve.catalog import tmf_mapping as tmf
from teleserve.catalog.schemas import OfferingOut, OfferingStatus, PriceComponent, price_components
from teleserve.core.errors import Conflict, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import MAX_LIMIT, Condition, ListQuery, Op
from teleserve.core.uow import UnitOfWork
from teleserve.web.tmf.auth import tmf_read, tmf_writer
from teleserve.web.tmf.listing import BadRequest, ListRequest, list_response, parse_list_request
from teleserve.web.tmf.resources import base_url, json_object, single_response

router = APIRouter(prefix=tmf.BASE, tags=["TMF620 product catalog"])

# TMF attribute path -> the catalog service's filter field.
OFFERING_FILTERS = {
    "id": "id",
    "code": "code",
    "name": "name",
    "lifecycleStatus": "status",
    "category.id": "category",
    "lastUpdate": "updated_at",
    "validFor.startDateTime": "valid_from",
    "validFor.endDateTime": "valid_to",
}
SPECIFICATION_FILTERS = {
    "id": "id",
    "productNumber": "code",
    "name": "name",
    "lifecycleStatus": "status",
    "lastUpdate": "updated_at",
    "validFor.startDateTime": "valid_from",
    "validFor.endDateTime": "valid_to",
}
PRICE_FILTERS = {
    "priceType": "price_type",
    "lifecycleStatus": "status",
    "lastUpdate": "updated_at",
    "validFor.startDateTime": "valid_from",
    "validFor.endDateTime": "valid_to",
}
CATEGORY_FILTERS = {"id": "id", "isRoot": "isRoot", "parentId": "parentId", "name": "name"}


def _currency(request: Request) -> str:
    return str(request.app.state.settings.currency)


def _service_query(listing: ListRequest, tmf_name: str = "lifecycleStatus") -> ListQuery:
    """The list query with TMF lifecycle names turned into the service's statuses."""
    conditions = []
    for condition in listing.query.conditions:
        if condition.field == "status":
            try:
                values = tuple(str(tmf.LIFECYCLE_IN[v]) for v in condition.values)
            except KeyError:
                raise BadRequest(
                    _("Invalid value for the filter {field}"), code="invalid_filter", field=tmf_name
                ) from None
            condition = Condition(condition.field, condition.op, values)
        conditions.append(condition)
    return ListQuery(tuple(conditions), listing.query.offset, listing.query.limit)


def _page(uow: UnitOfWork, query: ListQuery) -> tuple[list[OfferingOut], int]:
    try:
        return service.page_offerings(uow, query)
    except BadRequest:
        raise
    except ValidationError as exc:
        # A filter the service could not use is a malformed request (400), like the rest.
        if exc.code in ("unsupported_filter", "invalid_filter"):
            raise BadRequest(exc.message, code=exc.code, **exc.params) from None
        raise


def _related(uow: UnitOfWork, offerings: Sequence[OfferingOut]) -> dict[str, OfferingOut]:
    codes = {c for o in offerings for c in (*o.requires_plans, *o.excludes)}
    return service.offerings_by_code(uow, codes) if codes else {}


def _offering_resource(request: Request, uow: UnitOfWork, offering: OfferingOut) -> dict[str, Any]:
    return tmf.product_offering(base_url(request), offering, _related(uow, [offering]), uow.locale)


def _in_memory_page(
    items: Sequence[Mapping[str, Any]], listing: ListRequest, match: Mapping[str, Any]
) -> JSONResponse:
    """Filter and page a derived list of a few dozen resources in Python (``match``:
    service field -> function of a resource giving the value compared)."""
    selected = list(items)
    for condition in listing.query.conditions:
        if condition.op not in (Op.eq, Op.ne):
            raise BadRequest(
                _("The operator {op} cannot be used on {field}"),
                code="unsupported_filter",
                op=condition.op.value,
                field=condition.field,
            )
        get = match[condition.field]
        wanted = set(condition.values)
        keep = condition.op is Op.eq
        selected = [r for r in selected if (get(r) in wanted) == keep]
    window = selected[listing.query.offset : listing.query.offset + listing.query.limit]
    return list_response(window, len(selected), listing.fields)


# -- catalog and categories --------------------------------------------------------------


@router.get("/catalog")
async def list_catalogs(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, {})
        resource = tmf.catalog(base_url(request), service.offering_categories(uow), uow.locale)
        return _in_memory_page([resource], listing, {})

    return await tmf_read(request, read)


@router.get("/catalog/{catalog_id}")
async def get_catalog(catalog_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        in_use = service.offering_categories(uow)  # also checks the permission first
        if catalog_id != tmf.CATALOG_ID:
            raise NotFound(_("No such catalog"))
        return single_response(request, tmf.catalog(base_url(request), in_use, uow.locale))

    return await tmf_read(request, read)


def _categories(request: Request, uow: UnitOfWork) -> list[dict[str, Any]]:
    return tmf.categories(base_url(request), service.offering_categories(uow), uow.locale)


def _list_categories(request: Request, uow: UnitOfWork) -> JSONResponse:
    listing = parse_list_request(request, CATEGORY_FILTERS)
    for condition in listing.query.conditions:
        if condition.field == "isRoot" and not set(condition.values) <= {"true", "false"}:
            raise BadRequest(
                _("Invalid value for the filter {field}"), code="invalid_filter", field="isRoot"
            )
    match = {
        "id": lambda r: r["id"],
        "name": lambda r: r["name"],
        "parentId": lambda r: r.get("parentId"),
        "isRoot": lambda r: "true" if r["isRoot"] else "false",
    }
    return _in_memory_page(_categories(request, uow), listing, match)


@router.get("/category")
async def list_categories(request: Request) -> JSONResponse:
    return await tmf_read(request, lambda uow: _list_categories(request, uow))


@router.get("/category/{category_id}")
async def get_category(category_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        for resource in _categories(request, uow):
            if resource["id"] == category_id:
                return single_response(request, resource)
        raise NotFound(_("No such category"))

    return await tmf_read(request, read)


# -- product offerings -------------------------------------------------------------------


@router.get("/productOffering")
async def list_product_offerings(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, OFFERING_FILTERS)
        offerings, total = _page(uow, _service_query(listing))
        related = _related(uow, offerings)
        base = base_url(request)
        items = [tmf.product_offering(base, o, related, uow.locale) for o in offerings]
        return list_response(items, total, listing.fields)

    return await tmf_read(request, read)


@router.get("/productOffering/{offering_id}")
async def get_product_offering(offering_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        offering = service.get_offering_in_scope(uow, offering_id)
        return single_response(request, _offering_resource(request, uow, offering))

    return await tmf_read(request, read)


def _codes_of(uow: UnitOfWork) -> Callable[[Sequence[Mapping[str, Any]]], list[str]]:
    def codes(refs: Sequence[Mapping[str, Any]]) -> list[str]:
        out = []
        for ref in refs:
            try:
                out.append(service.get_offering(uow, ref["id"]).code)
            except NotFound:
                raise ValidationError(
                    _("Unknown offering {offering}"), offering=ref["id"]
                ) from None
        return out

    return codes


def _input(
    request: Request, uow: UnitOfWork, body: Mapping[str, Any], *, creating: bool
) -> tuple[dict[str, Any], OfferingStatus | None, str]:
    return tmf.offering_input(
        body,
        locale=uow.locale,
        currency=_currency(request),
        codes_of=_codes_of(uow),
        creating=creating,
    )


@router.post("/productOffering")
def create_product_offering(
    request: Request,
    uow: UnitOfWork = Depends(tmf_writer),
    body: dict[str, Any] = Depends(json_object),
) -> JSONResponse:
    uow.actor.require("catalog.write")  # before reading the body's references
    fields, target, _reason = _input(request, uow, body, creating=True)
    if "kind" not in fields:
        raise ValidationError(
            _("category is required: it names the kind of offering"), code="invalid_attribute"
        )
    if target is not None:
        fields["status"] = str(target)
    offering = service.create_offering(uow, fields)
    resource = _offering_resource(request, uow, offering)
    uow.commit()
    return single_response(request, resource, 201)


@router.patch("/productOffering/{offering_id}")
def patch_product_offering(
    offering_id: str,
    request: Request,
    uow: UnitOfWork = Depends(tmf_writer),
    body: dict[str, Any] = Depends(json_object),
) -> JSONResponse:
    uow.actor.require("catalog.write")
    current = service.get_offering_in_scope(uow, offering_id)
    fields, target, reason = _input(request, uow, body, creating=False)
    if "kind" in fields and fields.pop("kind") != current.kind:
        raise ValidationError(
            _("The kind of an offering cannot change; create a new offering instead"),
            code="invalid_attribute",
        )
    offering = service.update_offering(uow, current.id, fields) if fields else current
    # Field changes first: a draft may still change everything before it is activated,
    # and a retired offering changes no more.
    if target is not None and target != offering.status:
        if target is OfferingStatus.draft:
            raise Conflict(_("An offering cannot go back to design"))
        if target is OfferingStatus.active:
            offering = service.activate_offering(uow, current.id)
        else:
            offering = service.retire_offering(uow, current.id, reason)
    resource = _offering_resource(request, uow, offering)
    uow.commit()
    return single_response(request, resource)


# -- product specifications --------------------------------------------------------------


@router.get("/productSpecification")
async def list_product_specifications(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, SPECIFICATION_FILTERS)
        offerings, total = _page(uow, _service_query(listing))
        base = base_url(request)
        items = [tmf.product_specification(base, o, uow.locale) for o in offerings]
        return list_response(items, total, listing.fields)

    return await tmf_read(request, read)


@router.get("/productSpecification/{specification_id}")
async def get_product_specification(specification_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        offering = service.get_offering_in_scope(uow, specification_id)
        return single_response(
            request, tmf.product_specification(base_url(request), offering, uow.locale)
        )

    return await tmf_read(request, read)


# -- product offering prices -------------------------------------------------------------


def _all_offerings(uow: UnitOfWork, conditions: tuple[Condition, ...]) -> list[OfferingOut]:
    """Every offering matching ``conditions`` (the catalog is hundreds of rows)."""
    offerings: list[OfferingOut] = []
    while True:
        page, total = _page(uow, ListQuery(conditions, len(offerings), MAX_LIMIT))
        offerings.extend(page)
        if not page or len(offerings) >= total:
            return offerings


def _list_prices(request: Request, uow: UnitOfWork) -> JSONResponse:
    """Prices are derived from offerings: offering-level filters run in the database,
    ``priceType`` over the (at most five) prices of each matching offering."""
    listing = parse_list_request(request, PRICE_FILTERS)
    query = _service_query(listing)
    price_conditions = [c for c in query.conditions if c.field == "price_type"]
    for condition in price_conditions:
        if condition.op not in (Op.eq, Op.ne):
            raise BadRequest(
                _("The operator {op} cannot be used on {field}"),
                code="unsupported_filter",
                op=condition.op.value,
                field="priceType",
            )
    offering_conditions = tuple(c for c in query.conditions if c.field != "price_type")
    prices: list[tuple[PriceComponent, OfferingOut]] = [
        (price, offering)
        for offering in _all_offerings(uow, offering_conditions)
        for price in price_components(offering)
        if all((str(price.price_type) in c.values) == (c.op is Op.eq) for c in price_conditions)
    ]
    window = prices[query.offset : query.offset + query.limit]
    base, currency = base_url(request), _currency(request)
    items = [tmf.product_offering_price(base, p, o, currency, uow.locale) for p, o in window]
    return list_response(items, len(prices), listing.fields)


@router.get("/productOfferingPrice")
async def list_product_offering_prices(request: Request) -> JSONResponse:
    return await tmf_read(request, lambda uow: _list_prices(request, uow))


@router.get("/productOfferingPrice/{price_id}")
async def get_product_offering_price(price_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        offering_id, key = tmf.split_price_id(price_id)
        offering = service.get_offering_in_scope(uow, offering_id)
        price = next((p for p in price_components(offering) if p.key == key), None)
        if price is None:
            raise NotFound(_("No such price"))
        resource = tmf.product_offering_price(
            base_url(request), price, offering, _currency(request), uow.locale
        )
        return single_response(request, resource)

    return await tmf_read(request, read)
