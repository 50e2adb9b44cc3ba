"""The demo panel (``/panel``, only with ``--devices sim``): plays the customer and the
faults on the simulated devices through their control API — insert notes and a card,
jam, box full, paper low / out, card declined, clear the faults — and shows what the
devices hold, including the receipts the sim printer "printed".

After each action the agent polls its devices at once, so the customer screen's tiles
follow (and a fault raises its alarm) without waiting for the next status report.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from teleserve.kiosk.devices.base import Paper, notes_list
from teleserve.kiosk.devices.sim import CNY_NOTES, SimPanel
from teleserve.kiosk.ui.render import field, redirect, render, ui_of

# A test card (Luhn-valid, in a bank's BIN range): the sim card module keeps it inside.
TEST_PAN = "6222021234567890123"


def _insert_note(panel: SimPanel, form: FormData) -> bool:
    value = field(form, "value") or ""
    if not value.isdecimal() or int(value) not in CNY_NOTES:
        return False
    return panel.insert_notes(int(value))


def _insert_card(panel: SimPanel, form: FormData) -> bool:
    pan = field(form, "pan") or TEST_PAN
    try:
        panel.insert_card(pan)
    except ValueError:
        return False
    return True


def _paper(panel: SimPanel, form: FormData) -> bool:
    level = field(form, "level") or ""
    if level not in {p.value for p in Paper}:
        return False
    panel.paper(level)
    return True


def _clear_faults(panel: SimPanel, form: FormData) -> bool:
    """Every fault the panel can cause, and any driver fault or offline switch. A full
    box stays full: emptying it is a cash collection (``empty_box`` in the demo)."""
    panel.clear_jam()
    panel.paper(Paper.OK)
    panel.card_declined(None)
    for device in (panel.cash, panel.card, panel.printer, panel.id_reader, panel.sensors):
        device.set_fault(None)
        device.set_offline(False)
    return True


def _simple(control: Callable[[SimPanel], object]) -> Callable[[SimPanel, FormData], bool]:
    def run(panel: SimPanel, form: FormData) -> bool:
        control(panel)
        return True

    return run


ACTIONS: dict[str, Callable[[SimPanel, FormData], bool]] = {
    "note": _insert_note,
    "card": _insert_card,
    "paper": _paper,
    "jam": _simple(SimPanel.jam),
    "box_full": _simple(SimPanel.box_full),
    "empty_box": _simple(lambda p: p.cash.empty_box()),
    "decline": _simple(lambda p: p.card_declined("declined")),
    "clear": _clear_faults,
}


async def panel_screen(request: Request) -> Response:
    ui = ui_of(request)
    panel = ui.panel
    if panel is None:
        return Response("no simulated devices", status_code=404)
    escrow = await panel.cash.escrow()
    return render(
        request,
        "panel.html",
        customer=False,
        values=CNY_NOTES,
        escrow=notes_list(escrow),
        box_count=panel.cash.box_count,
        capacity=panel.cash.capacity_notes,
        jammed=panel.cash.jammed,
        refused=len(panel.cash.refused),
        paper=panel.printer.level.value,
        declining=panel.card.decline_reason is not None,
        printed=list(reversed(panel.printer.printed[-3:])),
        result=request.query_params.get("result", ""),
    )


async def panel_action(request: Request) -> Response:
    ui = ui_of(request)
    panel = ui.panel
    action = ACTIONS.get(request.path_params["action"])
    if panel is None or action is None:
        return Response("unknown panel action", status_code=404)
    ok = action(panel, await request.form())
    await ui.functions(fresh=True)
    return redirect(f"/panel?result={'ok' if ok else 'refused'}")


ROUTES = [
    Route("/panel", panel_screen),
    Route("/panel/{action}", panel_action, methods=["POST"]),
]
