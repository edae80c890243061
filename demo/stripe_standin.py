"""A stand-in for the slice of Stripe the recovery flow uses, plus two pages for a person to click.

API (what `webhook_app.providers.stripe` calls): `GET /v1/invoices/<id>`, `GET /v1/invoices`,
`POST /v1/billing_portal/sessions` (idempotency keys honoured), `GET /v1/balance`.
Pages: `/` fails a payment (an open invoice, then a signed `invoice.payment_failed` webhook to the
app); `/p/session/<id>` is the "portal", where "Save card and pay" pays the customer's open invoices
and sends `invoice.paid`. Everything is in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request
from markupsafe import escape

from demo.signing import stripe_signature

API_VERSION = "2025-03-31.basil"


class StripeStandIn:
    """Invoices, portal sessions and webhooks to `webhook_url`, signed with `webhook_secret`."""

    def __init__(self, webhook_url: str, webhook_secret: str):
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.base_url = ""  # set once served, for portal session URLs
        self.invoices: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    # -- state -------------------------------------------------------------------------------------
    def fail_payment(self, email: str, name: str, amount: int, customer: str | None = None) -> dict[str, Any]:
        """Open an invoice whose first charge failed, and tell the app (a signed webhook)."""
        with self._lock:
            n = next(self._ids)
        # One customer per email address, so two failures for one address are one customer's invoices.
        customer = customer or "cus_demo" + hashlib.sha256(email.lower().encode()).hexdigest()[:10]
        invoice_id = f"in_demo{n:04d}"
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "object": "invoice",
            "customer": customer,
            "customer_email": email,
            "customer_name": name,
            "number": f"DEMO-{n:04d}",
            "currency": "usd",
            "amount_due": amount,
            "amount_paid": 0,
            "amount_remaining": amount,
            "attempt_count": 1,
            "attempted": True,
            "next_payment_attempt": int(time.time()) + 3 * 86400,
            "hosted_invoice_url": f"{self.base_url}/i/in_demo{n:04d}",
            "status": "open",
            "collection_method": "charge_automatically",
            "billing_reason": "subscription_cycle",
            "livemode": False,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": f"sub_demo{n:04d}"}},
            "status_transitions": {"paid_at": None},
        }
        with self._lock:
            self.invoices[invoice_id] = invoice
        status = self.send_event("invoice.payment_failed", invoice)
        return {"invoice": invoice_id, "customer": customer, "webhook_status": status}

    def pay(self, customer: str) -> list[str]:
        """The customer saved a card: their open invoices are charged now (and the app is told)."""
        paid = []
        now = int(time.time())
        with self._lock:
            for invoice in self.invoices.values():
                if invoice["customer"] == customer and invoice["status"] == "open":
                    invoice.update(
                        status="paid",
                        amount_paid=invoice["amount_due"],
                        amount_remaining=0,
                        attempt_count=invoice["attempt_count"] + 1,
                        next_payment_attempt=None,
                        status_transitions={"paid_at": now},
                    )
                    paid.append(dict(invoice))
        for invoice in paid:
            self.send_event("invoice.paid", invoice)
        return [invoice["id"] for invoice in paid]

    def send_event(self, event_type: str, obj: dict[str, Any]) -> int:
        """POST a signed event to the app, as Stripe delivers it; returns the app's HTTP status."""
        with self._lock:
            n = next(self._ids)
        event = {
            "id": f"evt_demo{n:06d}",
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "livemode": False,
            "type": event_type,
            "data": {"object": obj},
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }
        body = json.dumps(event).encode()
        headers = {"Stripe-Signature": stripe_signature(body, self.webhook_secret), "Content-Type": "application/json"}
        try:
            return requests.post(self.webhook_url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException:
            return 0

    # -- HTTP --------------------------------------------------------------------------------------
    def _build(self) -> Flask:
        app = Flask("demo-stripe")

        @app.before_request
        def _auth() -> Response | None:
            if request.path.startswith("/v1/") and not request.headers.get("Authorization", "").startswith(
                "Bearer sk_"
            ):
                return _error(401, "Invalid API Key provided")
            return None

        @app.get("/v1/invoices/<invoice_id>")
        def get_invoice(invoice_id: str) -> Response:
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                return _error(404, f"No such invoice: '{invoice_id}'", "resource_missing", "id")
            return jsonify(invoice)

        @app.get("/v1/invoices")
        def list_invoices() -> Response:
            status = request.args.get("status")
            data = [i for i in self.invoices.values() if status in (None, i["status"])]
            return jsonify({"object": "list", "url": "/v1/invoices", "has_more": False, "data": data})

        @app.get("/v1/balance")
        def balance() -> Response:
            return jsonify({"object": "balance", "livemode": False, "available": [], "pending": []})

        @app.post("/v1/billing_portal/sessions")
        def create_session() -> Response:
            key = request.headers.get("Idempotency-Key")
            with self._lock:
                if key and key in self.idempotent:
                    return jsonify(self.idempotent[key])
                n = next(self._ids)
            customer = request.form.get("customer", "")
            return_url = request.form.get("flow_data[after_completion][redirect][return_url]") or request.form.get(
                "return_url"
            )
            session_id = f"bps_demo{n:04d}"
            session: dict[str, Any] = {
                "id": session_id,
                "object": "billing_portal.session",
                "customer": customer,
                "livemode": False,
                "return_url": return_url,
                "url": f"{self.base_url}/p/session/bps_demo{n:04d}",
            }
            with self._lock:
                self.sessions[session_id] = session
                if key:
                    self.idempotent[key] = session
            return jsonify(session)

        @app.get("/")
        def home() -> str:
            rows = "".join(
                f"<tr><td>{escape(i['id'])}</td><td>{escape(i['customer_email'])}</td>"
                f"<td>${i['amount_due'] / 100:.2f}</td><td>{escape(i['status'])}</td></tr>"
                for i in self.invoices.values()
            )
            return _page(
                "Stripe (demo stand-in)",
                f"""<form method="post" action="/demo/fail">
                <p><label>Customer email <input name="email" value="jane@example.com"></label></p>
                <p><label>Customer name <input name="name" value="Jane Doe"></label></p>
                <p><label>Amount (USD) <input name="amount" value="49.00"></label></p>
                <p><button>Fail a payment</button></p></form>
                <table border="1" cellpadding="4"><tr><th>invoice</th><th>customer</th><th>amount</th>
                <th>status</th></tr>{rows}</table>""",
            )

        @app.post("/demo/fail")
        def demo_fail() -> Response | tuple[Response, int]:
            data = request.get_json(silent=True) or request.form
            try:
                amount = round(float(data.get("amount", "49.00")) * 100)
            except ValueError:
                return jsonify({"error": "amount must be a number, e.g. 49.00"}), 400
            result = self.fail_payment(
                data.get("email") or "jane@example.com", data.get("name") or "Jane Doe", amount, data.get("customer")
            )
            if request.is_json:
                return jsonify(result)
            return redirect("/")  # type: ignore[return-value]

        @app.get("/p/session/<session_id>")
        def portal(session_id: str) -> str | tuple[str, int]:
            session = self.sessions.get(session_id)
            if session is None:
                return _page("Session expired", "<p>This portal session does not exist.</p>"), 404
            owed = sum(
                i["amount_due"]
                for i in self.invoices.values()
                if i["customer"] == session["customer"] and i["status"] == "open"
            )
            return _page(
                "Update your payment method",
                f"""<p>Customer {escape(session["customer"])} owes ${owed / 100:.2f}.</p>
                <form method="post" action="/p/session/{escape(session_id)}/pay">
                <p><label>Card number <input name="card" value="4242 4242 4242 4242"></label></p>
                <p><button>Save card and pay</button></p></form>""",
            )

        @app.post("/p/session/<session_id>/pay")
        def portal_pay(session_id: str) -> Response | tuple[str, int]:
            session = self.sessions.get(session_id)
            if session is None:
                return _page("Session expired", "<p>This portal session does not exist.</p>"), 404
            paid = self.pay(session["customer"])
            if request.headers.get("Accept") == "application/json":
                return jsonify({"paid": paid})
            return redirect(session.get("return_url") or "/")  # type: ignore[return-value]

        @app.get("/i/<invoice_id>")
        def hosted_invoice(invoice_id: str) -> str:
            return _page("Invoice", f"<p>Invoice {escape(invoice_id)} (demo).</p>")

        return app


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> Response:
    body: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>{body}"
