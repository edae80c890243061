"""A stand-in for the slice of the Loops API the app uses: it prints each email to the console.

`POST /api/v1/transactional` and `POST /api/v1/events/send` (a reused Idempotency-Key answers 409, as
Loops does), `GET /api/v1/api-key`. `GET /demo/messages` lists what was received (for scripts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request


class LoopsStandIn:
    """Accepts messages with the right key and hands each to `show` (the console, by default)."""

    def __init__(self, api_key: str, show: Callable[[dict[str, Any]], None]):
        self.api_key = api_key
        self.show = show
        self.messages: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self._lock = threading.Lock()
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("demo-loops")

        @app.before_request
        def _auth() -> tuple[Response, int] | None:
            if request.path.startswith("/api/") and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return jsonify({"success": False, "message": "Invalid API key"}), 401
            return None

        def accept(kind: str) -> Response | tuple[Response, int]:
            key = request.headers.get("Idempotency-Key")
            body = request.get_json(silent=True) or {}
            with self._lock:
                if key and key in self.keys:
                    return jsonify({"success": False, "message": "Idempotency key has already been used"}), 409
                if key:
                    self.keys.add(key)
                message = {"kind": kind, "key": key, "body": body}
                self.messages.append(message)
            self.show(message)
            return jsonify({"success": True})

        @app.post("/api/v1/transactional")
        def transactional() -> Response | tuple[Response, int]:
            return accept("transactional")

        @app.post("/api/v1/events/send")
        def event() -> Response | tuple[Response, int]:
            return accept("event")

        @app.get("/api/v1/api-key")
        def api_key() -> Response:
            return jsonify({"success": True, "teamName": "Demo team"})

        @app.get("/demo/messages")
        def messages() -> Response:
            with self._lock:
                return jsonify(list(self.messages))

        return app


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
