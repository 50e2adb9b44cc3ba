"""TMF681 Communication Management (read): ``/tmf-api/communicationManagement/v4/``.

``GET /communicationMessage`` and ``GET /communicationMessage/{id}`` (``notify.read``)
show the SMS and e-mail messages Teleserve sent or is sending for the client's
organisation, recipients masked and one-time codes masked in the text (the notify
domain stores them so). Sending is not offered: messages are queued by the business
actions that cause them (a payment, a one-time code...), never by an integrator, so
POST, PATCH and DELETE are not routed. docs/tmf/TMF681-communicationMessage.md has the
mapping and the deviations.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery
from teleserve.core.uow import UnitOfWork
from teleserve.notify import service
from teleserve.notify.models import Channel
from teleserve.notify.schemas import MessageView
from teleserve.web.tmf.auth import tmf_read
from teleserve.web.tmf.listing import BadRequest, list_response, parse_list_request
from teleserve.web.tmf.resources import href, single_response

BASE = "/tmf-api/communicationManagement/v4"
router = APIRouter(prefix=BASE, tags=["TMF681 Communication Management"])

# TMF attribute path -> service filter (notify.service.MESSAGE_FILTERS).
FILTERS = {
    "state": "stage",
    "messageType": "channel",
    "sendTime": "sent_at",
    "receiver.phoneNumber": "recipient",
    "receiver.email": "recipient",
    "receiver.party.id": "customer_id",
}

# Our delivery stage <-> CommunicationMessageStateType. "cancelled" never happens here.
_STATES = {"queued": "initial", "retrying": "inProgress", "sent": "completed", "failed": "failed"}
_STAGES = {state: stage for stage, state in _STATES.items()}
_TYPES = {Channel.sms.value: "SMS", Channel.email.value: "Email"}


def message_resource(request: Request, message: MessageView) -> dict[str, Any]:
    """A notification as a TMF681 CommunicationMessage (only attributes with a source)."""
    receiver: dict[str, Any] = (
        {"email": message.recipient}
        if message.channel == Channel.email
        else {"phoneNumber": message.recipient}
    )
    if message.customer_id is not None:
        receiver["party"] = {
            "id": message.customer_id,
            "role": "customer",
            "@referredType": "Customer",
        }
    resource: dict[str, Any] = {
        "id": message.id,
        "href": href(request, f"{BASE}/communicationMessage/{message.id}"),
        "@type": "CommunicationMessage",
        "messageType": _TYPES.get(message.channel, message.channel),
        "state": _STATES[service.delivery_stage(message)],
        "receiver": [receiver],
        "characteristic": [
            {"name": "template", "valueType": "string", "value": message.template},
            {"name": "locale", "valueType": "string", "value": message.locale},
        ],
    }
    # The text exists once the message was rendered for delivery.
    if message.body is not None:
        resource["content"] = message.body
    if message.subject is not None:
        resource["subject"] = message.subject
    if message.sent_at is not None:
        resource["sendTime"] = message.sent_at.isoformat()
    return resource


def _translated(condition: Condition) -> Condition:
    """TMF values -> the service's: a state name -> a delivery stage."""
    if condition.field != "stage":
        return condition
    stages: list[str] = []
    for value in condition.values:
        stage = _STAGES.get(value)
        if stage is None:
            raise BadRequest(
                _("Invalid value for the filter {field}"), code="invalid_filter", field="state"
            )
        stages.append(stage)
    return replace(condition, values=tuple(stages))


@router.get("/communicationMessage")
async def list_messages(request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        listing = parse_list_request(request, FILTERS)
        query = listing.query
        conditions = tuple(_translated(c) for c in query.conditions)
        query = ListQuery(conditions, query.offset, query.limit)
        messages, total = service.query_messages(uow, query)
        resources = [message_resource(request, m) for m in messages]
        return list_response(resources, total, listing.fields)

    return await tmf_read(request, read)


@router.get("/communicationMessage/{message_id}")
async def get_message(message_id: str, request: Request) -> JSONResponse:
    def read(uow: UnitOfWork) -> JSONResponse:
        message = service.get_message(uow, message_id)
        return single_response(request, message_resource(request, message))

    return await tmf_read(request, read)
