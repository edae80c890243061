"""A stand-in for the Stripe API: invoices, Billing Portal sessions, idempotency keys, and what paid
invoices put in the balance (invoice payments, charges, balance transactions, with `expand[]`)."""

from __future__ import annotations

import itertools
import threading

from flask import Flask, jsonify, request

from tests.fixtures import stripe_objects
from tests.standins import Faults


class StripeStandIn:
    """State and recorded requests; `app` is the Flask app to serve."""

    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.invoices: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.portal_sessions: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.idempotent: dict[str, dict] = {}
        self.portal_configured = True
        self.rejections: list[str] = []  # customers answered 400 resource_missing
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.base_url = ""  # set by the test once served, for session URLs
        self.invoice_payments: dict[str, list[dict]] = {}  # invoice id -> its InvoicePayments
        self.objects: dict[str, dict] = {}  # payment intents, charges, balance transactions by id
        self.app = self._build()

    def settle(self, invoice_id: str, *, amount: int, fee: int, currency: str = "usd", **txn) -> dict:
        """Record that a PaymentIntent paid `invoice_id` and its charge settled: returns the balance transaction."""
        balance = stripe_objects.balance_transaction(amount=amount, fee=fee, currency=currency, **txn)
        charge = stripe_objects.charge(balance_transaction=balance["id"])
        intent = stripe_objects.payment_intent(latest_charge=charge["id"])
        with self._lock:
            for obj in (balance, charge, intent):
                self.objects[obj["id"]] = obj
            payment = stripe_objects.invoice_payment(invoice_id, amount=charge["amount"], payment_intent=intent["id"])
            self.invoice_payments.setdefault(invoice_id, []).append(payment)
        return balance

    def _error(self, status: int, type_: str, message: str, code: str | None = None):
        body = {"error": {"type": type_, "message": message}}
        if code:
            body["error"]["code"] = code
        return jsonify(body), status

    def _build(self) -> Flask:
        app = Flask("stripe-standin")

        @app.before_request
        def _faults():
            with self._lock:
                self.requests.append((request.method, request.path))
            if not request.headers.get("Authorization", "").startswith("Bearer sk_"):
                return self._error(401, "invalid_request_error", "Invalid API Key provided")
            if request.form.get("customer", "").startswith("cus_missing"):
                return None  # a permanent 400 is answered as such, never masked by an injected fault
            status = self.faults.verdict()
            if status == 429:
                return self._error(429, "invalid_request_error", "Too many requests", "rate_limit")
            if status:
                return self._error(500, "api_error", "Something went wrong on Stripe's end.")
            return None

        @app.get("/v1/invoices/<invoice_id>")
        def get_invoice(invoice_id):
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                return self._error(404, "invalid_request_error", f"No such invoice: '{invoice_id}'", "resource_missing")
            return jsonify(invoice)

        @app.get("/v1/invoice_payments")
        def list_invoice_payments():
            invoice_id = request.args.get("invoice")
            if not invoice_id:
                return self._error(400, "invalid_request_error", "Missing required param: invoice.")
            listing = {
                "object": "list",
                "url": "/v1/invoice_payments",
                "has_more": False,
                "data": self.invoice_payments.get(invoice_id, []),
            }
            return jsonify(stripe_objects.expand(listing, _expand_params(), self.objects))

        @app.get("/v1/balance_transactions/<object_id>")
        @app.get("/v1/charges/<object_id>")
        def get_object(object_id):
            if object_id not in self.objects:
                return self._error(404, "invalid_request_error", f"No such object: '{object_id}'", "resource_missing")
            return jsonify(stripe_objects.expand(self.objects[object_id], _expand_params(), self.objects))

        @app.get("/v1/payment_intents/<intent_id>")
        def get_payment_intent(intent_id):
            intent = self.payment_intents.get(intent_id)
            if intent is None:
                return self._error(
                    404, "invalid_request_error", f"No such payment_intent: '{intent_id}'", "resource_missing"
                )
            return jsonify(intent)

        @app.post("/v1/billing_portal/sessions")
        def create_portal_session():
            key = request.headers.get("Idempotency-Key")
            with self._lock:
                if key and key in self.idempotent:
                    return jsonify(self.idempotent[key])
            if not self.portal_configured and "configuration" not in request.form:
                return self._error(
                    400,
                    "invalid_request_error",
                    "No configuration provided and your live mode default configuration has not "
                    "been created. Provide a configuration or create your default by saving your "
                    "customer portal settings in live mode at https://dashboard.stripe.com/settings/billing/portal.",
                )
            customer = request.form.get("customer", "")
            if customer.startswith("cus_missing"):
                with self._lock:
                    self.rejections.append(customer)
                return self._error(400, "invalid_request_error", f"No such customer: '{customer}'", "resource_missing")
            with self._lock:
                n = next(self._ids)
                session = {
                    "id": f"bps_{n}",
                    "object": "billing_portal.session",
                    "customer": customer,
                    "url": f"{self.base_url}/p/session/bps_{n}",
                    "livemode": False,
                }
                self.portal_sessions.append(
                    {"form": request.form.to_dict(), "idempotency_key": key, "session": session}
                )
                if key:
                    self.idempotent[key] = session
            return jsonify(session)

        @app.get("/p/session/<session_id>")
        def portal_page(session_id):
            return f"<html><body><h1>Stripe portal {session_id}</h1></body></html>"

        return app


def _expand_params() -> list[str]:
    """`expand[]` values as the SDK sends them (`expand[0]=...`, or `expand[]=...`)."""
    return [value for key, value in request.args.items(multi=True) if key.startswith("expand[")]
