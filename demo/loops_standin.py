"""The Loops stand-in of `tests/standins/loops.py`, printing each email to the console.

It accepts `POST /api/v1/transactional` and `POST /api/v1/events/send` (a reused Idempotency-Key
answers 409, as Loops does) and `GET /api/v1/api-key`; this module adds `GET /demo/messages`, what was
received (for scripts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, jsonify

from tests.standins.loops import LoopsStandIn


def build(api_key: str, show: Callable[[dict[str, Any]], None]) -> LoopsStandIn:
    """A Loops stand-in accepting `api_key` that hands each accepted message to `show`."""
    loops = LoopsStandIn(api_key=api_key)
    loops.after_accept = show

    @loops.app.get("/demo/messages")
    def messages() -> Response:
        return jsonify(list(loops.messages))

    return loops


def render(message: dict[str, Any]) -> str:
    """An email as a person would read it, from the message data the app sent."""
    body = message["body"]
    data = body.get("dataVariables") or body.get("eventProperties") or {}
    invoices = data.get("invoices") or [
        {"invoiceNumber": data.get("invoiceNumber"), "amountDue": data.get("amountDue")}
    ]
    lines = [
        f"To: {body.get('email')}   ({message['kind']} {body.get('transactionalId') or body.get('eventName')})",
        f"Hi {data.get('customerName') or 'there'}, your payment did not go through.",
        *(f"  invoice {inv.get('invoiceNumber')}: {inv.get('amountDue')}" for inv in invoices),
        f"Update your payment method: {data.get('updatePaymentUrl')}",
    ]
    return "\n".join(lines)
