"""TMF676 Payment Management: ``/tmf-api/paymentManagement/v4/payment``.

The specification file says ``basePath: /payment/v4/`` — a known defect of the published
file (../shared/tmf/README.md); every other TMF API lives under ``/tmf-api/<name>/v4/``,
so this one does too. docs/tmf/TMF676-payment.md has the mapping and the deviations.

- ``GET /payment`` and ``GET /payment/{id}`` (``payments.read``): every payment the
  client's organisation may see — kiosk, counter, web and API payments alike, held and
  reversed ones included (their ``status`` says so).
- ``POST /payment`` (``payments.record``) records money through
  ``payments.service.record_payments``, the one write path for money, with the client's
  ``Idempotency-Key`` header (required). A retry with the same key and body answers the
  first answer again (201, same body, ``Idempotent-Replayed: true``); the same key with
  another body is refused (409).
- Refunds are not routed: reversing a payment (``payments.reverse``) and refunding held
  money are staff powers that no API scope grants.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service
from teleserve.payments.models import Channel, PaymentStatus
from teleserve.payments.schemas import PaymentRequest, PaymentView
from teleserve.web.tmf.auth import tmf_read, tmf_writer
from teleserve.web.tmf.listing import BadRequest, list_response, parse_list_request
from teleserve.web.tmf.resources import href, json_object, money_in, money_out, single_response

BASE = "/tmf-api/paymentManagement/v4"
router = APIRouter(prefix=BASE, tags=["TMF676 Payment Management"])

# TMF attribute path -> service filter (payments.service.PAYMENT_FILTERS).
FILTERS = {
    "status": "status",
    "account.id": "billing_account_id",
    "paymentDate": "created_at",
    "channel": "channel",
    "channel.id": "channel",
    "correlatorId": "external_ref",
    "name": "receipt_no",
}

# How the money reached us, as a TMF payment method type. Card numbers and PINs never
# reach the server (DESIGN.md section 9); web and API payments were collected by someone
# else (a web payment provider, the integrator), who keeps the details.
_METHOD_TYPES: dict[str, str] = {
    Channel.kiosk_cash: "Cash",
    Channel.counter_cash: "Cash",
    Channel.kiosk_card: "BankCard",
    Channel.web: "External",
    Channel.api: "External",
}

# Channels an API client may record: kiosk and counter payments carry cash box, terminal
# and serial references and arrive through the gateway and the counter, not here.
_API_CHANNELS = (Channel.api.value, Channel.web.value)

# What a POST body may carry. Everything else is refused, so that what we record is the
# whole request and "the same body" (idempotency) means the same payment.
_CREATE_ATTRIBUTES = frozenset(
    {
        "account",
        "totalAmount",
        "amount",
        "channel",
        "paymentMethod",
        "correlatorId",
        "@type",
        "@baseType",
        "@schemaLocation",
    }
)
# A payment method is accepted as a reference only: never card numbers or other details.
_REFERENCE_KEYS = frozenset(
    {"id", "href", "name", "description", "@type", "@baseType", "@schemaLocation", "@referredType"}
)
_SUSPENSE = "suspense"  # the code of the ledger account of held money (payments.ledger)
MAX_IDEMPOTENCY_KEY = 100  # leaves room for the ``api:<client id>:`` namespace (200)


# -- mapping ---------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _status_date(view: PaymentView) -> datetime:
    """When the current status was reached."""
    if view.status == PaymentStatus.reversed and view.reversed_at is not None:
        return view.reversed_at
    if view.status == PaymentStatus.completed:
        return view.settled_at or view.completed_at or view.created_at
    return view.created_at


def payment_resource(request: Request, view: PaymentView) -> dict[str, Any]:
    """Our payment as a TMF676 Payment (only attributes with a source)."""
    money = money_out(view.amount, view.currency)
    resource: dict[str, Any] = {
        "id": view.id,
        "href": href(request, f"{BASE}/payment/{view.id}"),
        "@type": "Payment",
        "name": view.receipt_no,
        "status": view.status,
        "statusDate": _time(_status_date(view)),
        "paymentDate": _time(view.created_at),
        # No tax split on a payment: VAT is on the invoice, so net = total.
        "amount": money,
        "totalAmount": dict(money),
        "channel": {"id": view.channel, "name": view.channel, "@referredType": "Channel"},
        "paymentMethod": {"@type": _METHOD_TYPES.get(view.channel, "External")},
    }
    if view.billing_account_id is not None:
        ba = view.billing_account_id
        resource["account"] = {
            "id": ba,
            "href": href(request, f"/tmf-api/accountManagement/v4/billingAccount/{ba}"),
            "@referredType": "BillingAccount",
        }
    else:
        # Held money that named only a service number sits in the suspense ledger account
        # until staff settle it (the spec requires an account; this is where it is).
        resource["account"] = {
            "id": _SUSPENSE,
            "name": _SUSPENSE,
            "@referredType": "LedgerAccount",
        }
    if view.external_ref is not None:
        resource["correlatorId"] = view.external_ref
    if view.card_auth_code is not None:
        resource["authorizationCode"] = view.card_auth_code
    return resource


def _first_answer(view: PaymentView, outcome: service.PaymentOutcome) -> PaymentView:
    """The payment as it was when first recorded: a retry gets exactly the first answer,
    even if staff have since settled or reversed it (GET shows it as it is now)."""
    completed = outcome.status == PaymentStatus.completed
    return replace(
        view,
        status=outcome.status or view.status,
        held_reason=outcome.held_reason,
        billing_account_id=outcome.billing_account_id,
        completed_at=view.created_at if completed else None,
        settled_at=None,
        reversed_at=None,
        reversal_reason=None,
    )


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationError(_("{field} must be text"), code="invalid_field", field=name)
    return value


def _reference(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(_("{field} must be an object"), code="invalid_field", field=name)
    return value


def _payment_method(body: dict[str, Any]) -> None:
    method = _reference(body, "paymentMethod")
    if method is None:
        raise ValidationError(_("{field} is required"), code="missing_field", field="paymentMethod")
    extra = sorted(set(method) - _REFERENCE_KEYS)
    if extra:
        raise ValidationError(
            _(
                "paymentMethod is accepted as a reference only (id, name, @type): card "
                "numbers and other payment details never reach Teleserve"
            ),
            code="payment_details_refused",
        )
    for key, value in method.items():
        if not isinstance(value, str):
            raise ValidationError(
                _("{field} must be text"), code="invalid_field", field=f"paymentMethod.{key}"
            )


def _amount(body: dict[str, Any], currency: str) -> int:
    total = body.get("totalAmount")
    net = body.get("amount")
    if total is None and net is None:
        raise ValidationError(_("{field} is required"), code="missing_field", field="totalAmount")
    fen = money_in(total, currency, "totalAmount") if total is not None else None
    if net is not None:
        net_fen = money_in(net, currency, "amount")
        if fen is not None and net_fen != fen:
            raise ValidationError(
                _("amount and totalAmount must be equal: payments carry no tax"),
                code="invalid_money",
            )
        fen = net_fen
    assert fen is not None
    return fen


def payment_request(body: dict[str, Any], key: str, client_id: str) -> PaymentRequest:
    """A TMF676 Payment_Create body → the service's request (nothing written yet)."""
    unknown = sorted(set(body) - _CREATE_ATTRIBUTES)
    if unknown:
        raise ValidationError(
            _("{field} cannot be set when recording a payment"),
            code="unsupported_attribute",
            field=", ".join(unknown),
        )
    account = _reference(body, "account")
    account_id = account.get("id") if account is not None else None
    if not isinstance(account_id, str) or not account_id.strip():
        raise ValidationError(_("{field} is required"), code="missing_field", field="account.id")
    channel = _reference(body, "channel")
    channel_id = channel.get("id", Channel.api.value) if channel is not None else Channel.api.value
    if channel_id not in _API_CHANNELS:
        raise ValidationError(
            _("Payments recorded through the API use the channel api or web"),
            code="invalid_channel",
        )
    _payment_method(body)
    currency = get_settings().currency
    return PaymentRequest(
        idempotency_key=f"api:{client_id}:{key}",
        channel=str(channel_id),
        amount=_amount(body, currency),
        billing_account_id=account_id,
        currency=currency,
        external_ref=_text(body, "correlatorId"),
    )


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None or not key.strip():
        raise BadRequest(
            _("The Idempotency-Key header is required to record a payment"),
            code="missing_idempotency_key",
        )
    key = key.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(
            _("The Idempotency-Key header must be 1 to {max} printable characters"),
            code="invalid_idempotency_key",
            max=MAX_IDEMPOTENCY_KEY,
        )
    return key


# -- routes ----------------------------------------------------------------------------


@router.get("/payment")
async def list_payments(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, FILTERS)
        views, total = service.list_payments(uow, listing.query)
        return list_response([payment_resource(request, v) for v in views], total, listing.fields)

    return await tmf_read(request, read)


@router.get("/payment/{payment_id}")
async def get_payment(payment_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        view = service.get_payment(uow, payment_id)
        return single_response(request, payment_resource(request, view))

    return await tmf_read(request, read)


def _record(request: Request, uow: UnitOfWork, body: dict[str, Any]) -> JSONResponse:
    uow.actor.require("payments.record")  # before the request is judged (the service checks too)
    payment = payment_request(body, _idempotency_key(request), uow.actor.id)
    outcome = service.record_payments(uow, [payment])[0]
    assert outcome.payment_id is not None  # a one-request batch raises its error
    view = service.get_payment(uow, outcome.payment_id)
    if not outcome.replayed:
        uow.commit()
    response = single_response(
        request, payment_resource(request, _first_answer(view, outcome)), 201
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.post("/payment", status_code=201)
async def create_payment(request: Request, uow: UnitOfWork = Depends(tmf_writer)) -> JSONResponse:
    body = await json_object(request)
    # The service and the database are synchronous: keep them off the event loop.
    return await run_in_threadpool(_record, request, uow, body)
