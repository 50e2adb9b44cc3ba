"""The customer's screens: home, paying for a number by cash or card, the receipt, login
and the account summary, receipt reprint, out of service.

Every action is a POST that calls ``CustomerFlows`` and redirects to the next screen
(post/redirect/get: reloading a receipt never pays twice). A ``FlowError`` or bad input
comes back as a message on the screen the customer was on; a function the agent
disabled meanwhile sends them home, where the reason shows on its tile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from teleserve.core.i18n import SUPPORTED_LOCALES, _
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.availability import Availability, Function
from teleserve.kiosk.devices.base import notes_list, notes_total
from teleserve.kiosk.flows import FlowError, Unavailable
from teleserve.kiosk.ui import forms
from teleserve.kiosk.ui.render import field, redirect, render, ui_of
from teleserve.kiosk.ui.session import IDLE_ENDED, CustomerSession, Flash

NOT_PAYABLE = _("This number cannot be paid for; please check it")
NO_CARD = _("No card was read: insert your card, then press Pay")
LOGGED_OUT = _("You have logged out")
STARTING = _("The terminal is starting; please wait")

METHODS = {"cash": Function.CASH_PAYMENT, "card": Function.CARD_PAYMENT}

Action = Callable[[Agent, CustomerSession], Awaitable[str]]


async def act(request: Request, back: str, action: Action) -> Response:
    """Run one customer action under the session lock; where to go next comes from the
    action, or ``back`` with the error it raised."""
    ui = ui_of(request)
    agent, session = ui.agent, ui.session
    if agent is None:
        return redirect("/")
    async with session.lock:
        session.touch()
        try:
            target = await action(agent, session)
        except forms.InputError as exc:
            session.flash = Flash.message("error", exc.message, **exc.params)
            target = back
        except Unavailable as exc:
            session.flash = Flash.flow_error(exc)
            target = "/"
        except FlowError as exc:
            session.flash = Flash.flow_error(exc)
            target = back
        session.touch()  # a slow answer is not the customer's idleness
    return redirect(target)


def _first_disabled(*availabilities: Availability) -> Availability:
    for availability in availabilities:
        if not availability.enabled:
            return availability
    return availabilities[0]


@dataclass(frozen=True, slots=True)
class Tile:
    key: str
    href: str
    title: str  # message ids
    hint: str
    availability: Availability


def _tiles(functions: dict[Function, Availability]) -> list[Tile]:
    return [
        Tile(
            "cash",
            "/pay/cash",
            _("Pay by cash"),
            _("Top up a number with banknotes"),
            functions[Function.CASH_PAYMENT],
        ),
        Tile(
            "card",
            "/pay/card",
            _("Pay by card"),
            _("Top up a number with a bank card"),
            functions[Function.CARD_PAYMENT],
        ),
        Tile(
            "account",
            "/account/login",
            _("My account"),
            _("Log in with your service password"),
            functions[Function.ACCOUNT],
        ),
        Tile(
            "reprint",
            "/reprint",
            _("Reprint a receipt"),
            _("By serial number or the last payment"),
            _first_disabled(functions[Function.RECEIPT], functions[Function.ACCOUNT]),
        ),
    ]


def _signature(functions: dict[Function, Availability] | None) -> str:
    """Changes when the home screen would: the screen polls it and reloads."""
    if functions is None:
        return "starting"
    return ",".join(f"{f.value}:{int(a.enabled)}:{a.reason or ''}" for f, a in functions.items())


# -- home, language, session end ----------------------------------------------------------


async def home(request: Request) -> Response:
    ui = ui_of(request)
    agent = ui.agent
    functions = await ui.functions()
    if agent is None or functions is None:
        return render(request, "out_of_service.html", idle=False, reason=STARTING, sig="starting")
    if agent.journal.cash_in() is not None:
        return redirect("/pay/cash/insert")  # notes may be in escrow: confirm or cancel
    if agent.customer.customer_token is not None:
        return redirect("/account")
    sig = _signature(functions)
    account = functions[Function.ACCOUNT]
    if not account.enabled:
        # Every function but printing needs the service: nothing to offer.
        return render(request, "out_of_service.html", idle=False, reason=account.reason, sig=sig)
    return render(request, "home.html", idle=False, tiles=_tiles(functions), sig=sig)


async def state(request: Request) -> Response:
    """Polled by the home and out-of-service screens."""
    return JSONResponse({"sig": _signature(await ui_of(request).functions())})


async def language(request: Request) -> Response:
    form = await request.form()
    ui = ui_of(request)
    locale = field(form, "locale")
    if locale in SUPPORTED_LOCALES:
        ui.session.locale = locale
        ui.session.touch()
    target = field(form, "next") or "/"
    # Only a path of this UI: never an open redirect.
    return redirect(target if target.startswith("/") and not target.startswith("//") else "/")


async def finish(request: Request) -> Response:
    """The customer pressed Home (or Done): the session ends, nothing is left behind."""
    await ui_of(request).end()
    return redirect("/")


async def timeout(request: Request) -> Response:
    """The screen's idle timer ran out."""
    await ui_of(request).end(Flash.message("notice", IDLE_ENDED))
    return redirect("/")


async def activity(request: Request) -> Response:
    """The screen's heartbeat while the customer types (keypad touches stay in the page)."""
    ui_of(request).session.touch()
    return Response(status_code=204)


# -- paying for a number -------------------------------------------------------------------


def _method(request: Request) -> str | None:
    method = request.path_params["method"]
    return method if method in METHODS else None


def _cash_open(request: Request) -> bool:
    agent = ui_of(request).agent
    return agent is not None and agent.journal.cash_in() is not None


async def number_screen(request: Request) -> Response:
    method = _method(request)
    if method is None:
        return redirect("/")
    if _cash_open(request):
        return redirect("/pay/cash/insert")  # (a browser's back button) notes first
    return render(request, "number.html", method=method)


async def number_submit(request: Request) -> Response:
    method = _method(request)
    if method is None:
        return redirect("/")
    form = await request.form()

    async def action(agent: Agent, session: CustomerSession) -> str:
        msisdn = forms.number(field(form, "msisdn"))
        check = await agent.customer.check_number(msisdn)
        if not check.payable:
            raise forms.InputError(NOT_PAYABLE)
        session.msisdn, session.customer_name = msisdn, check.customer_name
        session.amount = None
        return f"/pay/{method}/confirm"

    return await act(request, f"/pay/{method}", action)


async def confirm_screen(request: Request) -> Response:
    method = _method(request)
    session = ui_of(request).session
    if method is None or session.msisdn is None:
        return redirect("/")
    if _cash_open(request):
        return redirect("/pay/cash/insert")
    return render(
        request,
        "confirm.html",
        method=method,
        msisdn=session.msisdn,
        customer_name=session.customer_name,
    )


async def confirm_submit(request: Request) -> Response:
    method = _method(request)
    if method is None:
        return redirect("/")

    async def action(agent: Agent, session: CustomerSession) -> str:
        if session.msisdn is None:
            return "/"
        if method == "cash":
            if agent.journal.cash_in() is not None:
                return "/pay/cash/insert"  # confirmed twice: one cash-in only
            await agent.customer.start_cash(session.msisdn)
            session.escrow_total = 0
            return "/pay/cash/insert"
        return "/pay/card/amount"

    return await act(request, f"/pay/{method}/confirm", action)


# -- cash ----------------------------------------------------------------------------------


async def cash_screen(request: Request) -> Response:
    agent = ui_of(request).agent
    msisdn = agent.journal.cash_in() if agent is not None else None
    if agent is None or msisdn is None:
        return redirect("/")
    escrow = await agent.customer.cash_escrow()
    return render(
        request, "cash.html", msisdn=msisdn, notes=notes_list(escrow), total=notes_total(escrow)
    )


async def cash_escrow(request: Request) -> Response:
    """The escrow now, for the cash screen's poll. A note going in counts as a touch."""
    ui = ui_of(request)
    agent = ui.agent
    if agent is None or agent.journal.cash_in() is None:
        return JSONResponse({"open": False})
    escrow = await agent.customer.cash_escrow()
    total = notes_total(escrow)
    if total != ui.session.escrow_total:
        ui.session.escrow_total = total
        ui.session.touch()
    return JSONResponse(
        {
            "open": True,
            "total_fen": total,
            "total": forms.money(total),
            "notes": [
                {"value": forms.money(n["value"]), "count": n["count"]} for n in notes_list(escrow)
            ],
        }
    )


async def cash_confirm(request: Request) -> Response:
    async def action(agent: Agent, session: CustomerSession) -> str:
        msisdn = agent.journal.cash_in()
        if msisdn is None and session.outcome is not None:
            return "/receipt"  # a second press of Pay: the first one paid
        outcome = await agent.customer.confirm_cash()
        session.outcome, session.outcome_msisdn = outcome, msisdn
        return "/receipt"

    return await act(request, "/pay/cash/insert", action)


async def cash_cancel(request: Request) -> Response:
    await ui_of(request).end()  # returns the escrow and says so
    return redirect("/")


# -- card ----------------------------------------------------------------------------------


async def amount_screen(request: Request) -> Response:
    ui = ui_of(request)
    if ui.session.msisdn is None:
        return redirect("/")
    return render(
        request,
        "amount.html",
        msisdn=ui.session.msisdn,
        limit=ui.settings.card_max_fen,
    )


async def amount_submit(request: Request) -> Response:
    form = await request.form()
    limit = ui_of(request).settings.card_max_fen

    async def action(agent: Agent, session: CustomerSession) -> str:
        if session.msisdn is None:
            return "/"
        session.amount = forms.amount_fen(field(form, "amount"), limit)
        return "/pay/card/card"

    return await act(request, "/pay/card/amount", action)


async def card_screen(request: Request) -> Response:
    session = ui_of(request).session
    if session.msisdn is None or session.amount is None:
        return redirect("/")
    return render(request, "card.html", msisdn=session.msisdn, amount=session.amount)


async def card_pay(request: Request) -> Response:
    async def action(agent: Agent, session: CustomerSession) -> str:
        if session.msisdn is None or session.amount is None:
            return "/receipt" if session.outcome is not None else "/"
        try:
            # A declined card raises ``Refused`` with its own message: shown as it is.
            outcome = await agent.customer.card_payment(session.msisdn, session.amount)
        except FlowError as exc:
            if exc.details.get("device") == "no_card":
                raise FlowError(NO_CARD) from exc
            raise
        session.outcome, session.outcome_msisdn = outcome, session.msisdn
        session.amount = None  # a second press of Pay pays nothing more
        return "/receipt"

    return await act(request, "/pay/card/card", action)


# -- the receipt -----------------------------------------------------------------------------


async def receipt(request: Request) -> Response:
    session = ui_of(request).session
    if session.outcome is None or session.outcome_msisdn is None:
        return redirect("/")
    return render(request, "receipt.html", outcome=session.outcome, msisdn=session.outcome_msisdn)


# -- my account ----------------------------------------------------------------------------


async def login_screen(request: Request) -> Response:
    return render(request, "login.html")


async def login_submit(request: Request) -> Response:
    form = await request.form()

    async def action(agent: Agent, session: CustomerSession) -> str:
        msisdn = forms.number(field(form, "msisdn"))
        secret = forms.password(field(form, "password"))
        await agent.customer.login(msisdn, "password", secret)
        return "/account"

    return await act(request, "/account/login", action)


async def account(request: Request) -> Response:
    ui = ui_of(request)
    agent = ui.agent
    if agent is None or agent.customer.customer_token is None:
        return redirect("/account/login")
    async with ui.session.lock:
        try:
            summary = await agent.customer.summary()
        except Unavailable as exc:
            ui.session.flash = Flash.flow_error(exc)
            return redirect("/")
        except FlowError as exc:  # the token expired or ended: log in again
            ui.session.flash = Flash.flow_error(exc)
            return redirect("/account/login")
    return render(request, "account.html", summary=summary)


async def logout(request: Request) -> Response:
    await ui_of(request).end(Flash.message("notice", LOGGED_OUT))
    return redirect("/")


# -- reprint ---------------------------------------------------------------------------------


async def reprint_screen(request: Request) -> Response:
    return render(request, "reprint.html", last=ui_of(request).last_payment())


async def reprint_submit(request: Request) -> Response:
    form = await request.form()
    ui = ui_of(request)

    async def action(agent: Agent, session: CustomerSession) -> str:
        if field(form, "last"):
            last = ui.last_payment()
            if last is None:
                raise forms.InputError(forms.BAD_SERIAL)
            serial = last.serial
        else:
            serial = forms.serial(field(form, "serial"))
        session.reprint_lines = await agent.customer.reprint(serial)
        return "/reprint/done"

    return await act(request, "/reprint", action)


async def reprint_done(request: Request) -> Response:
    ui = ui_of(request)
    if ui.session.reprint_lines is None:
        return redirect("/reprint")
    functions = await ui.functions(fresh=True)
    printed = functions is not None and functions[Function.RECEIPT].enabled
    return render(request, "reprint_done.html", lines=ui.session.reprint_lines, printed=printed)


ROUTES = [
    Route("/", home),
    Route("/state", state),
    Route("/lang", language, methods=["POST"]),
    Route("/end", finish, methods=["POST"]),
    Route("/timeout", timeout, methods=["POST"]),
    Route("/activity", activity, methods=["POST"]),
    Route("/pay/cash/insert", cash_screen),
    Route("/pay/cash/escrow", cash_escrow),
    Route("/pay/cash/confirm-notes", cash_confirm, methods=["POST"]),
    Route("/pay/cash/cancel", cash_cancel, methods=["POST"]),
    Route("/pay/card/amount", amount_screen),
    Route("/pay/card/amount", amount_submit, methods=["POST"]),
    Route("/pay/card/card", card_screen),
    Route("/pay/card/pay", card_pay, methods=["POST"]),
    Route("/pay/{method}", number_screen),
    Route("/pay/{method}", number_submit, methods=["POST"]),
    Route("/pay/{method}/confirm", confirm_screen),
    Route("/pay/{method}/confirm", confirm_submit, methods=["POST"]),
    Route("/receipt", receipt),
    Route("/account/login", login_screen),
    Route("/account/login", login_submit, methods=["POST"]),
    Route("/account", account),
    Route("/account/logout", logout, methods=["POST"]),
    Route("/reprint", reprint_screen),
    Route("/reprint", reprint_submit, methods=["POST"]),
    Route("/reprint/done", reprint_done),
]
