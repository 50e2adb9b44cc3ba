"""TM Forum APIs of the customers domain (docs/tmf/):

- TMF632 Party Management at ``/tmf-api/party/v4/``: ``individual``, ``organization``;
- TMF629 Customer Management at ``/tmf-api/customerManagement/v4/``: ``customer``;
- TMF666 Account Management at ``/tmf-api/accountManagement/v4/``: ``billingAccount``
  (the other account kinds of TMF666 are not ours).

Each route maps a request onto the domain's services (``customers.service``) acting as
the bearer token's API client; the services check permissions and scope every query to
the client's organisation subtree. The mapping to and from TMF resources is in
``customers.tmf``. Handlers are ``async``: a GET runs its whole database work, token
lookup included, in one trip to the threadpool (``tmf_read``); a write reads the body on
the event loop, then works in the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from teleserve.core.errors import Conflict, ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service, tmf
from teleserve.customers.models import CustomerCategory
from teleserve.customers.schemas import PartyView
from teleserve.customers.validation import IdType
from teleserve.iam import service as iam
from teleserve.payments import service as payments
from teleserve.web.tmf.auth import tmf_read, tmf_writer
from teleserve.web.tmf.listing import BadRequest, list_response, parse_list_request
from teleserve.web.tmf.resources import base_url, json_object, money_in, single_response

Writer = Annotated[UnitOfWork, Depends(tmf_writer)]

party_router = APIRouter(prefix=tmf.PARTY_API, tags=["TMF632 Party"])
customer_router = APIRouter(prefix=tmf.CUSTOMER_API, tags=["TMF629 Customer"])
account_router = APIRouter(prefix=tmf.ACCOUNT_API, tags=["TMF666 Account"])
router = APIRouter()

# TMF attribute paths (and documented extensions) → the services' filter fields.
INDIVIDUAL_FILTERS = {"fullName": "name", "gender": "gender", "idNumber": "id_number"}
ORGANIZATION_FILTERS = {
    "name": "name",
    "organizationIdentification.identificationId": "credit_code",
}
CUSTOMER_FILTERS = {
    "status": "status",
    "name": "name",
    "engagedParty.id": "party_id",
    "engagedParty.@referredType": "category",
    "account.id": "account_id",
    "validFor.startDateTime": "created_at",
    "customerNumber": "number",
    "serviceNumber": "service_number",
    "idNumber": "id_number",
}
ACCOUNT_FILTERS = {
    "relatedParty.id": "customer_id",
    "state": "status",
    "accountType": "kind",
    "name": "number",
}
_CATEGORY_VALUES = {name: str(category) for category, name in tmf.PARTY_TYPES.items()}


def _list_query(
    request: Request, filters: Mapping[str, str]
) -> tuple[ListQuery, frozenset[str] | None]:
    parsed = parse_list_request(request, filters)
    query = parsed.query
    # engagedParty.@referredType speaks TMF (Individual / Organization), the service its
    # own categories; an unknown type matches nothing, like any other unknown value.
    conditions = tuple(
        Condition(c.field, c.op, tuple(_CATEGORY_VALUES.get(v, v) for v in c.values))
        if c.field == "category"
        else c
        for c in query.conditions
    )
    return ListQuery(conditions, query.offset, query.limit), parsed.fields


def _listed(
    filters: Mapping[str, str], run: Callable[[ListQuery], tuple[list[Any], int]], query: ListQuery
) -> tuple[list[Any], int]:
    """Run a service list; a filter it refuses is a 400 naming the TMF attribute."""
    try:
        return run(query)
    except ValidationError as exc:
        if exc.code not in ("unsupported_filter", "invalid_filter"):
            raise
        names = {field: path for path, field in filters.items()}
        params = dict(exc.params)
        params["field"] = names.get(str(params.get("field")), params.get("field"))
        raise BadRequest(exc.message, code=exc.code, **params) from None


def _currency(request: Request) -> str:
    return str(request.app.state.settings.currency)


# =====================================================================================
# TMF632 individual / organization
# =====================================================================================


def _party_resource(request: Request, party: PartyView) -> dict[str, Any]:
    if party.category == CustomerCategory.individual:
        return tmf.individual(base_url(request), party)
    return tmf.organization(base_url(request), party)


def _list_parties(request: Request, uow: UnitOfWork, category: CustomerCategory) -> JSONResponse:
    filters = (
        INDIVIDUAL_FILTERS if category is CustomerCategory.individual else ORGANIZATION_FILTERS
    )
    query, fields = _list_query(request, filters)
    parties, total = _listed(filters, lambda q: service.list_parties(uow, category, q), query)
    return list_response([_party_resource(request, p) for p in parties], total, fields)


@party_router.get("/individual")
async def list_individuals(request: Request) -> JSONResponse:
    return await tmf_read(
        request, lambda uow: _list_parties(request, uow, CustomerCategory.individual)
    )


@party_router.get("/individual/{id}")
async def get_individual(id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        party = service.get_party(uow, CustomerCategory.individual, id)
        return single_response(request, _party_resource(request, party))

    return await tmf_read(request, read)


@party_router.get("/organization")
async def list_organizations(request: Request) -> JSONResponse:
    return await tmf_read(
        request, lambda uow: _list_parties(request, uow, CustomerCategory.organisation)
    )


@party_router.get("/organization/{id}")
async def get_organization(id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        party = service.get_party(uow, CustomerCategory.organisation, id)
        return single_response(request, _party_resource(request, party))

    return await tmf_read(request, read)


def _own_unit(uow: UnitOfWork) -> tuple[str, str]:
    """A customer registered over the API belongs to the client's own org unit."""
    return iam.org_unit_id_at(uow, uow.actor.org_path), uow.actor.org_path


def _register_person(uow: UnitOfWork, person: tmf.PersonIn) -> str:
    org_unit_id, org_path = _own_unit(uow)
    detail = service.register_individual(
        uow,
        name=person.name,
        id_number=person.id_number,
        id_type=person.id_type or IdType.resident_id,
        gender=person.gender,
        mobile=person.contacts.mobile,
        email=person.contacts.email,
        address=person.contacts.address,
        org_unit_id=org_unit_id,
        org_path=org_path,
    )
    return detail.id


def _register_organization(uow: UnitOfWork, organization: tmf.OrganizationIn) -> str:
    org_unit_id, org_path = _own_unit(uow)
    detail = service.register_organization(
        uow,
        name=organization.name,
        credit_code=organization.credit_code,
        mobile=organization.contacts.mobile,
        email=organization.contacts.email,
        address=organization.contacts.address,
        org_unit_id=org_unit_id,
        org_path=org_path,
    )
    return detail.id


@party_router.post("/individual", status_code=201)
async def create_individual(request: Request, uow: Writer) -> JSONResponse:
    """Registers the person as a customer (party and customer role together)."""
    uow.actor.require(service.WRITE)
    body = await json_object(request)

    def create() -> JSONResponse:
        customer_id = _register_person(uow, tmf.individual_in(body))
        party = service.get_customer_party(uow, customer_id)
        uow.commit()
        return single_response(request, _party_resource(request, party), 201)

    return await run_in_threadpool(create)


@party_router.post("/organization", status_code=201)
async def create_organization(request: Request, uow: Writer) -> JSONResponse:
    """Registers the organisation as a customer (party and customer role together)."""
    uow.actor.require(service.WRITE)
    body = await json_object(request)

    def create() -> JSONResponse:
        customer_id = _register_organization(uow, tmf.organization_in(body))
        party = service.get_customer_party(uow, customer_id)
        uow.commit()
        return single_response(request, _party_resource(request, party), 201)

    return await run_in_threadpool(create)


def _patch_contacts(
    uow: UnitOfWork, customer_id: str, body: Mapping[str, Any], current: Mapping[str, Any]
) -> bool:
    """Apply a merge PATCH's ``contactMedium`` (the whole list: RFC 7386 replaces
    arrays); whether anything was asked to change."""
    if "contactMedium" not in body or body["contactMedium"] == current.get("contactMedium"):
        return False
    contacts = tmf.contacts_in(body)
    service.replace_contact_media(
        uow,
        customer_id,
        mobile=contacts.mobile,
        email=contacts.email,
        address=contacts.address,
    )
    return True


async def _patch_party(
    request: Request, uow: UnitOfWork, category: CustomerCategory, party_id: str
) -> JSONResponse:
    uow.actor.require(service.WRITE)
    body = await json_object(request)

    def patch() -> JSONResponse:
        party = service.get_party(uow, category, party_id)
        current = _party_resource(request, party)
        tmf.unchanged_or_refuse(body, current, {"contactMedium"})
        if _patch_contacts(uow, party.customer_id, body, current):
            party = service.get_party(uow, category, party_id)
        uow.commit()
        return single_response(request, _party_resource(request, party))

    return await run_in_threadpool(patch)


@party_router.patch("/individual/{id}")
async def patch_individual(id: str, request: Request, uow: Writer) -> JSONResponse:
    """Merge PATCH: ``contactMedium`` only."""
    return await _patch_party(request, uow, CustomerCategory.individual, id)


@party_router.patch("/organization/{id}")
async def patch_organization(id: str, request: Request, uow: Writer) -> JSONResponse:
    """Merge PATCH: ``contactMedium`` only."""
    return await _patch_party(request, uow, CustomerCategory.organisation, id)


# =====================================================================================
# TMF629 customer
# =====================================================================================


@customer_router.get("/customer")
async def list_customers(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        query, fields = _list_query(request, CUSTOMER_FILTERS)
        records, total = _listed(CUSTOMER_FILTERS, lambda q: service.list_customers(uow, q), query)
        base = base_url(request)
        return list_response([tmf.customer(base, r) for r in records], total, fields)

    return await tmf_read(request, read)


@customer_router.get("/customer/{id}")
async def get_customer(id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        record = service.get_customer_record(uow, id)
        return single_response(request, tmf.customer(base_url(request), record))

    return await tmf_read(request, read)


CUSTOMER_FIELDS = frozenset({"name", "status", "engagedParty", "contactMedium"})


def _create_customer(uow: UnitOfWork, body: Mapping[str, Any]) -> str:
    """POST /customer: the engaged party given by value is registered with its customer
    role; a reference to an existing party is a conflict (every party here already is a
    customer: the two are registered together)."""
    tmf.refuse_unknown(body, CUSTOMER_FIELDS)
    tmf.check_type(body, "Customer")
    status = tmf.text(body, "status")
    if status not in (None, "active"):
        raise ValidationError(
            _("{field} must be {value}"), code="invalid_field", field="status", value="active"
        )
    party = tmf.an_object(body, "engagedParty")
    if party is None:
        raise ValidationError(_("{field} is required"), code="missing_field", field="engagedParty")
    category = tmf.category_of(party)
    if "id" in party:
        existing = service.get_party(uow, category, str(party["id"]))
        raise Conflict(
            _("This party is already registered as customer {customer_id}"),
            code="party_is_customer",
            customer_id=existing.customer_id,
        )
    name = tmf.text(body, "name")
    value = {k: v for k, v in party.items() if k not in ("@referredType", "role")}
    if "contactMedium" in body:
        if "contactMedium" in value:
            raise ValidationError(
                _("Give contactMedium on the customer or on its engaged party, not both"),
                code="medium_repeated",
            )
        value["contactMedium"] = body["contactMedium"]
    if category is CustomerCategory.individual:
        given_name = tmf.text(value, "name")
        value.pop("name", None)
        person = tmf.individual_in(value, name or given_name)
        _same_name(name, person.name)
        return _register_person(uow, person)
    organization = tmf.organization_in(value, name)
    _same_name(name, organization.name)
    return _register_organization(uow, organization)


def _same_name(customer_name: str | None, party_name: str) -> None:
    if customer_name is not None and " ".join(customer_name.split()) != " ".join(
        party_name.split()
    ):
        raise ValidationError(
            _("The customer's name is its party's name; they differ"), code="name_mismatch"
        )


@customer_router.post("/customer", status_code=201)
async def create_customer(request: Request, uow: Writer) -> JSONResponse:
    uow.actor.require(service.WRITE)
    body = await json_object(request)

    def create() -> JSONResponse:
        record = service.get_customer_record(uow, _create_customer(uow, body))
        uow.commit()
        return single_response(request, tmf.customer(base_url(request), record), 201)

    return await run_in_threadpool(create)


@customer_router.patch("/customer/{id}")
async def patch_customer(id: str, request: Request, uow: Writer) -> JSONResponse:
    """Merge PATCH: ``contactMedium`` only."""
    uow.actor.require(service.WRITE)
    body = await json_object(request)

    def patch() -> JSONResponse:
        base = base_url(request)
        record = service.get_customer_record(uow, id)
        current = tmf.customer(base, record)
        tmf.unchanged_or_refuse(body, current, {"contactMedium"})
        if _patch_contacts(uow, record.id, body, current):
            record = service.get_customer_record(uow, id)
        uow.commit()
        return single_response(request, tmf.customer(base, record))

    return await run_in_threadpool(patch)


# =====================================================================================
# TMF666 billingAccount
# =====================================================================================


@account_router.get("/billingAccount")
async def list_billing_accounts(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        query, fields = _list_query(request, ACCOUNT_FILTERS)
        accounts, total = _listed(ACCOUNT_FILTERS, lambda q: service.list_accounts(uow, q), query)
        base, currency = base_url(request), _currency(request)
        resources = [tmf.billing_account(base, a, currency) for a in accounts]
        return list_response(resources, total, fields)

    return await tmf_read(request, read)


@account_router.get("/billingAccount/{id}")
async def get_billing_account(id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        account = service.get_account_record(uow, id)
        resource = tmf.billing_account(base_url(request), account, _currency(request))
        return single_response(request, resource)

    return await tmf_read(request, read)


@account_router.post("/billingAccount", status_code=201)
async def create_billing_account(request: Request, uow: Writer) -> JSONResponse:
    """Opens a billing account for a customer, and its ledger account (as the seed does)
    so payments to it post instead of being held."""
    uow.actor.require(service.WRITE)
    body = await json_object(request)
    currency = _currency(request)

    def create() -> JSONResponse:
        spec = tmf.account_in(body, currency)
        opened = service.open_billing_account(
            uow,
            spec.customer_id,
            spec.kind,
            credit_limit=spec.credit_limit,
            bill_cycle_day=spec.bill_cycle_day,
        )
        payments.open_customer_account(
            uow, opened.id, opened.customer_id, opened.org_path, currency
        )
        account = service.get_account_record(uow, opened.id)
        uow.commit()
        resource = tmf.billing_account(base_url(request), account, currency)
        return single_response(request, resource, 201)

    return await run_in_threadpool(create)


@account_router.patch("/billingAccount/{id}")
async def patch_billing_account(id: str, request: Request, uow: Writer) -> JSONResponse:
    """Merge PATCH: ``creditLimit`` (postpaid) only. Closing an account settles its
    balance first, which is the disconnection order's job (a later issue)."""
    uow.actor.require(service.WRITE)
    body = await json_object(request)
    currency = _currency(request)

    def patch() -> JSONResponse:
        base = base_url(request)
        account = service.get_account_record(uow, id)
        current = tmf.billing_account(base, account, currency)
        if "state" in body and body["state"] != current["state"]:
            raise ValidationError(
                _("A billing account is closed by a disconnection order, not by PATCH"),
                code="not_patchable",
            )
        tmf.unchanged_or_refuse(body, current, {"creditLimit"})
        if "creditLimit" in body and body["creditLimit"] != current.get("creditLimit"):
            limit = money_in(body["creditLimit"], currency, "creditLimit")
            service.change_credit_limit(uow, account.id, limit)
            account = service.get_account_record(uow, id)
        uow.commit()
        return single_response(request, tmf.billing_account(base, account, currency))

    return await run_in_threadpool(patch)


router.include_router(party_router)
router.include_router(customer_router)
router.include_router(account_router)
