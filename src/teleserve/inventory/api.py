"""TMF637 Product Inventory at ``/tmf-api/productInventory/v4/``: lines as ``product``.

GET list and by id (``inventory.read``), scoped to the client's organisation subtree by
the service. Not routed: POST / PATCH / DELETE product. Creating a line, changing its
plan or VAS, barring and terminating it are service orders in real life (number
assignment, eligibility, work orders, fees): TMF622 product ordering, which the orders
issue delivers, will make those changes through ``inventory.service``. The hub comes with
the event hub. docs/tmf/TMF637-product-inventory.md has the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from teleserve.catalog import service as catalog
from teleserve.catalog.schemas import OfferingOut
from teleserve.core.errors import NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery
from teleserve.core.uow import UnitOfWork
from teleserve.inventory import service
from teleserve.inventory import tmf_mapping as tmf
from teleserve.inventory.schemas import SubscriptionOut
from teleserve.web.tmf.auth import tmf_read
from teleserve.web.tmf.listing import BadRequest, ListRequest, list_response, parse_list_request
from teleserve.web.tmf.resources import base_url, single_response

router = APIRouter(prefix=tmf.BASE, tags=["TMF637 product inventory"])

# TMF attribute path -> the inventory service's filter field. ``serviceNumber`` is a
# documented alias of ``productSerialNumber`` (the words an operator's integrators use).
PRODUCT_FILTERS = {
    "id": "id",
    "status": "state",
    "productSerialNumber": "service_number",
    "serviceNumber": "service_number",
    "relatedParty.id": "customer_id",
    "billingAccount.id": "billing_account_id",
    "productOffering.id": "plan_code",
    "startDate": "activated_at",
    "terminationDate": "terminated_at",
}


def _offering_codes(uow: UnitOfWork, values: Sequence[str]) -> tuple[str, ...]:
    """productOffering.id values (catalog ids, or codes) -> plan codes. An offering the
    client cannot read matches no line; "-" is never a code, so it keeps the condition
    (an empty one would match everything)."""
    codes = []
    for value in values:
        try:
            codes.append(catalog.get_offering(uow, value).code)
        except NotFound:
            codes.append("-")
    return tuple(codes)


def _service_query(uow: UnitOfWork, listing: ListRequest) -> ListQuery:
    conditions = []
    for condition in listing.query.conditions:
        values = condition.values
        if condition.field == "state":
            unknown = [v for v in values if v not in tmf.STATUS_IN]
            if unknown:
                raise BadRequest(
                    _("status is one of {values}"),
                    code="invalid_filter",
                    values=", ".join(tmf.STATUS_IN),
                )
            values = tuple(tmf.STATUS_IN[v] for v in values)
        elif condition.field == "plan_code":
            values = _offering_codes(uow, values)
        conditions.append(Condition(condition.field, condition.op, values))
    return ListQuery(tuple(conditions), listing.query.offset, listing.query.limit)


def _resources(
    request: Request, uow: UnitOfWork, lines: Sequence[SubscriptionOut]
) -> list[dict[str, object]]:
    codes = {c for line in lines for c in (line.plan_code, *line.vas_codes)}
    offerings: dict[str, OfferingOut] = catalog.offerings_by_code(uow, codes) if codes else {}
    root, currency = base_url(request), str(request.app.state.settings.currency)
    return [tmf.product(root, line, offerings, currency, uow.locale) for line in lines]


def _list_products(request: Request, uow: UnitOfWork) -> JSONResponse:
    listing = parse_list_request(request, PRODUCT_FILTERS)
    try:
        lines, total = service.page_subscriptions(uow, _service_query(uow, listing))
    except ValidationError as exc:
        if exc.code in ("unsupported_filter", "invalid_filter"):
            raise BadRequest(exc.message, code=exc.code, **exc.params) from None
        raise
    return list_response(_resources(request, uow, lines), total, listing.fields)


@router.get("/product")
async def list_products(request: Request) -> JSONResponse:
    return await tmf_read(request, lambda uow: _list_products(request, uow))


@router.get("/product/{product_id}")
async def get_product(product_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        line = service.get_subscription(uow, product_id)
        return single_response(request, _resources(request, uow, [line])[0])

    return await tmf_read(request, read)
