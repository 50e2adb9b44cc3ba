"""TMF685 Resource Pool Management v1: ``/tmf-api/resourcePoolManagement/v1/``.

The number pool 号码资源 as TMF685 resources (docs/tmf/TMF685-resourcePool.md):

- ``resourcePool``: one per number range of a region, with its numbers counted by
  state. The v1 specification only has POST / PATCH / DELETE on it; ranges are made by
  number-pool administration (``numbers.admin``), a staff power no API scope grants, so
  those are not routed — and GET (list / by id), which integrators need to see capacity,
  is served as an extension in the TMF630 shape.
- ``reservation``: a number held for a customer, an order or a session until an expiry
  (``numbers.service.reserve``). POST reserves (``numbers.reserve``), GET lists the live
  ones / reads one (``numbers.read``), PATCH renews (``valid_for``) or cancels
  (``reservationState: cancelled``). The reservation's id is the number.
- ``availabilityCheck``, ``push`` and ``extract`` are not routed (see the docs page).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from teleserve.core.clock import utcnow
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery, Op, parse_datetime
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import service
from teleserve.numbers.models import NumberStatus
from teleserve.numbers.schemas import NumberOut, PoolOut
from teleserve.web.tmf.auth import tmf_read, tmf_writer
from teleserve.web.tmf.listing import BadRequest, list_response, parse_fields, parse_list_request
from teleserve.web.tmf.resources import href, json_object, single_response

BASE = "/tmf-api/resourcePoolManagement/v1"
router = APIRouter(prefix=BASE, tags=["TMF685 Resource Pool Management"])

# TMF attribute path -> service filter (numbers.service.RANGE_FILTERS / RESERVATION_FILTERS).
POOL_FILTERS = {"relatedParty": "org_code", "numberKind": "kind"}
RESERVATION_FILTERS = {
    "relatedParty.id": "holder",
    "valid_for": "reserved_until",
    "reservationItem.appliedCapacityAmount.resource.id": "number",
    "reservationItem.resourceCapacity.resourcePool.id": "range_id",
}

# Who holds a reservation: our holder is ``<kind>:<reference>`` (numbers.models).
_HOLDER_KINDS = {"Customer": "customer", "ProductOrder": "order", "Session": "session"}
_HOLDER_TYPES = {kind: referred for referred, kind in _HOLDER_KINDS.items()}

_RESERVED = "reserved"
_CANCELLED = "cancelled"
_CREATE_ATTRIBUTES = frozenset(
    {
        "relatedParty",
        "reservationItem",
        "reservationState",
        "valid_for",
        "@type",
        "@baseType",
        "@schemaLocation",
    }
)
_PATCH_ATTRIBUTES = frozenset({"reservationState", "valid_for"})


# -- mapping ---------------------------------------------------------------------------


def _org_code(org_path: str) -> str:
    """The org code of the unit owning a path (``/TS/GD/GZ/`` → ``GZ``)."""
    return org_path.rstrip("/").rsplit("/", 1)[-1]


def _pool_href(request: Request, range_id: str) -> str:
    return href(request, f"{BASE}/resourcePool/{range_id}")


def pool_resource(request: Request, pool: PoolOut) -> dict[str, Any]:
    """A number range as a TMF685 ResourcePool (``NumberPool`` sub-class: the kind and the
    counts by state are our extension attributes; v1 has no capacity attribute)."""
    r = pool.range
    span = f"{r.first}-{r.last}"
    resource: dict[str, Any] = {
        "id": r.id,
        "href": _pool_href(request, r.id),
        "@type": "NumberPool",
        "@baseType": "ResourcePool",
        "relatedParty": _org_code(r.org_path),
        "resourceCollection": [
            {"name": r.name or span, "objectId": span, "@referredType": "LogicalResource"}
        ],
        "numberKind": r.kind.value,
        "capacity": {"total": r.size, **{s.value: pool.counts[s] for s in NumberStatus}},
    }
    if r.name:
        resource["description"] = r.name
    return resource


def _holder_party(holder: str | None) -> dict[str, Any]:
    kind, sep, reference = (holder or "").partition(":")
    if sep and kind in _HOLDER_TYPES:
        return {"id": reference, "role": "holder", "@referredType": _HOLDER_TYPES[kind]}
    return {"id": holder or "", "role": "holder"}


def reservation_resource(
    request: Request, number: NumberOut, state: str = _RESERVED
) -> dict[str, Any]:
    """A reserved number as a TMF685 Reservation of one item."""
    item: dict[str, Any] = {
        "quantity": 1,
        "subReservationState": state,
        "appliedCapacityAmount": {
            "appliedDemandAmount": "1",
            "resource": [
                {
                    "id": number.value,
                    "name": number.value,
                    "type": number.kind.value,
                    "state": number.status.value,
                    "@referredType": "LogicalResource",
                }
            ],
        },
    }
    if number.range_id is not None:
        item["resourceCapacity"] = {
            "resourcePool": {
                "id": number.range_id,
                "href": _pool_href(request, number.range_id),
                "@type": "NumberPool",
            }
        }
    resource: dict[str, Any] = {
        "id": number.value,
        "href": href(request, f"{BASE}/reservation/{number.value}"),
        "@type": "Reservation",
        "reservationState": state,
        "relatedParty": _holder_party(number.holder),
        "reservationItem": [item],
    }
    if number.reserved_until is not None:
        resource["valid_for"] = number.reserved_until.isoformat()
    return resource


# -- request bodies --------------------------------------------------------------------


def _refuse_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(
            _("These attributes cannot be set on a reservation: {attributes}"),
            code="unsupported_attribute",
            attributes=", ".join(unknown),
        )


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(_("{field} must be an object"), code="invalid_field", field=field)
    return value


def _holder(body: dict[str, Any]) -> str:
    party = _object(body.get("relatedParty"), "relatedParty")
    reference = party.get("id")
    kind = _HOLDER_KINDS.get(str(party.get("@referredType")))
    if not isinstance(reference, str) or not reference.strip() or kind is None:
        raise ValidationError(
            _(
                "relatedParty needs an id and an @referredType of Customer, ProductOrder "
                "or Session: who holds the number"
            ),
            code="invalid_holder",
        )
    return f"{kind}:{reference}"


def _number(body: dict[str, Any]) -> str:
    """The one number a reservation names (reservationItem[0] … resource[0].id)."""
    refused = ValidationError(
        _(
            "Name exactly one number in "
            "reservationItem[0].appliedCapacityAmount.resource[0].id: a reservation "
            "holds one number"
        ),
        code="invalid_reservation_item",
    )
    items = body.get("reservationItem")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise refused
    item = items[0]
    if item.get("quantity", 1) != 1:
        raise refused
    applied = item.get("appliedCapacityAmount")
    resources = applied.get("resource") if isinstance(applied, dict) else None
    if not isinstance(resources, list) or len(resources) != 1:
        raise refused
    resource = resources[0]
    number = resource.get("id") if isinstance(resource, dict) else None
    if not isinstance(number, str):
        raise refused
    return number


def _minutes(body: dict[str, Any]) -> int | None:
    """``valid_for`` (when the reservation ends) as minutes from now, rounded up."""
    raw = body.get("valid_for")
    if raw is None:
        return None
    try:
        until = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:
        until = None
    if until is None:
        raise ValidationError(
            _("{field} must be an ISO 8601 date-time"),
            code="invalid_field",
            field="valid_for",
        )
    return max(0, math.ceil((until - utcnow()).total_seconds() / 60))


def _state(body: dict[str, Any], allowed: tuple[str, ...]) -> str | None:
    state = body.get("reservationState")
    if state is not None and state not in allowed:
        raise ValidationError(
            _("reservationState can only be {states} here"),
            code="invalid_state",
            states=", ".join(allowed),
        )
    return state


# -- routes: resource pools ------------------------------------------------------------


@router.get("/resourcePool")
async def list_pools(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, POOL_FILTERS)
        pools, total = service.list_pools(uow, listing.query)
        return list_response([pool_resource(request, p) for p in pools], total, listing.fields)

    return await tmf_read(request, read)


@router.get("/resourcePool/{pool_id}")
async def get_pool(pool_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        return single_response(request, pool_resource(request, service.get_pool(uow, pool_id)))

    return await tmf_read(request, read)


# -- routes: reservations --------------------------------------------------------------


def _holders(condition: Condition) -> Condition:
    """``relatedParty.id=C1`` → any holder kind with that reference."""
    if condition.field != "holder":
        return condition
    if condition.op not in (Op.eq, Op.ne):
        raise BadRequest(
            _("The operator {op} cannot be used on {field}"),
            code="unsupported_filter",
            op=condition.op.value,
            field="relatedParty.id",
        )
    values = tuple(f"{kind}:{v}" for v in condition.values for kind in _HOLDER_TYPES)
    return replace(condition, values=values)


def _list_reservations(request: Request, uow: UnitOfWork) -> JSONResponse:
    listing = parse_list_request(request, RESERVATION_FILTERS)
    query = listing.query
    query = ListQuery(tuple(_holders(c) for c in query.conditions), query.offset, query.limit)
    numbers, total = service.list_reservations(uow, query)
    return list_response([reservation_resource(request, n) for n in numbers], total, listing.fields)


@router.get("/reservation")
async def list_reservations(request: Request) -> JSONResponse:
    return await tmf_read(request, lambda uow: _list_reservations(request, uow))


@router.get("/reservation/{reservation_id}")
async def get_reservation(reservation_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        # TMF685 v1 answers GET by id with an array of Reservation: kept, so that clients
        # generated from the specification read it (docs/tmf/TMF685-resourcePool.md).
        resource = reservation_resource(request, service.get_reservation(uow, reservation_id))
        return list_response([resource], 1, parse_fields(request.query_params.get("fields")))

    return await tmf_read(request, read)


def _reserve(request: Request, uow: UnitOfWork, body: dict[str, Any]) -> JSONResponse:
    uow.actor.require("numbers.reserve")  # before the body is judged (the service checks too)
    _refuse_unknown(body, _CREATE_ATTRIBUTES)
    _state(body, (_RESERVED,))
    holder = _holder(body)
    number = _number(body)
    minutes = _minutes(body)
    reserved = service.reserve(uow, number, holder, minutes)
    uow.commit()
    return single_response(request, reservation_resource(request, reserved), 201)


@router.post("/reservation", status_code=201)
async def create_reservation(
    request: Request, uow: UnitOfWork = Depends(tmf_writer)
) -> JSONResponse:
    body = await json_object(request)
    # The service and the database are synchronous: keep them off the event loop.
    return await run_in_threadpool(_reserve, request, uow, body)


def _patch(
    request: Request, uow: UnitOfWork, reservation_id: str, body: dict[str, Any]
) -> JSONResponse:
    uow.actor.require("numbers.reserve")  # a client without the scope learns nothing more
    _refuse_unknown(body, _PATCH_ATTRIBUTES)
    current = service.get_reservation(uow, reservation_id)
    assert current.holder is not None  # a live reservation has a holder
    state = _state(body, (_RESERVED, _CANCELLED))
    minutes = _minutes(body)
    if state == _CANCELLED:
        if minutes is not None:
            raise ValidationError(
                _("A cancelled reservation has no validity to change"), code="invalid_state"
            )
        service.cancel_reservation(uow, current.value, current.holder)
        uow.commit()
        # What was cancelled: the number is free again and the reservation has ended.
        ended = current.model_copy(update={"status": NumberStatus.free, "reserved_until": None})
        return single_response(request, reservation_resource(request, ended, _CANCELLED))
    if minutes is None:
        return single_response(request, reservation_resource(request, current))
    renewed = service.reserve(uow, current.value, current.holder, minutes)
    uow.commit()
    return single_response(request, reservation_resource(request, renewed))


@router.patch("/reservation/{reservation_id}")
async def patch_reservation(
    reservation_id: str, request: Request, uow: UnitOfWork = Depends(tmf_writer)
) -> JSONResponse:
    body = await json_object(request)
    return await run_in_threadpool(_patch, request, uow, reservation_id, body)
