"""A stand-in for the Stripe API, served over real HTTP (see `tests.standins.serve`).

One Stripe account in memory, for every test that talks to Stripe (integration, end-to-end,
reliability) and for the benchmarks (`benches/standin_server.py`):
- invoices (retrieve with `expand[]`, list with `status` / `collection_method` / `customer` filters and
  cursor paging), payment intents, and what paid invoices put in the balance (invoice payments,
  charges, balance transactions, with `expand[]`);
- Billing Portal sessions and configurations, webhook endpoints, events (`types`, `delivery_success`,
  `created[gte]`), `/v1/balance` for the key check;
- idempotency keys on every POST (a repeated key answers the first answer, as Stripe does);
- what Stripe does by itself, for a person clicking through (`make demo`) or a test: `fail_payment`
  opens a failed invoice and delivers a signed `invoice.payment_failed` to `webhook_url`; the portal
  page a session's URL opens has a "Save card and pay" button that pays the customer's open invoices,
  settles them in the balance and delivers `invoice.paid`.

Fault knobs: `faults` (random latency, 500s, 429s, timeouts); `throttle[path]` / `outage[path]` answer
that many 429s / 500s on `path` before serving it; `html_errors[path]` answers a proxy's HTML page;
`key_valid = False` answers 401 to everything; customers in `missing_customers` (or named
`cus_missing...`) are unknown to Stripe (400 resource_missing, never masked by a random fault);
`portal_configured = False` is an account whose Billing Portal was never set up; customers in
`settled_at_send` have paid by the time they are read again. Every request is recorded as
`(method, path, params)` with Stripe's form encoding decoded into nested dicts and lists.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
from collections import Counter
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request
from markupsafe import escape

from tests.fixtures import stripe_objects
from tests.standins import Faults


class StripeStandIn:
    """State and recorded requests; `app` is the Flask app to serve."""

    def __init__(self, faults: Faults | None = None, *, livemode: bool = False):
        self.faults = faults or Faults()
        self.livemode = livemode
        self.key_valid = True
        # Invoices by id, in the order Stripe lists them (newest first: the test adds them in that order).
        self.invoices: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.events: list[dict] = []  # `_delivered: True` marks one Stripe delivered (left out of sync listings)
        self.portal_configurations: dict[str, dict] = {}
        self.webhook_endpoints: dict[str, dict] = {}
        # One entry per session minted: {"form": raw form, "params": decoded, "idempotency_key", "session"}.
        self.portal_sessions: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, decoded params)
        self.idempotent: dict[str, dict] = {}  # Idempotency-Key -> the first answer
        self.portal_configured = True
        self.missing_customers: set[str] = set()
        self.rejections: list[str] = []  # customers answered 400 resource_missing
        self.settled_at_send: set[str] = set()  # customers whose invoices read as paid
        self.throttle: Counter = Counter()  # path -> 429s to answer before serving it
        self.outage: Counter = Counter()  # path -> 500s to answer before serving it
        self.html_errors: dict[str, tuple[int, str]] = {}  # path -> (status, HTML page), as a proxy answers
        self.invoice_payments: dict[str, list[dict]] = {}  # invoice id -> its InvoicePayments
        self.objects: dict[str, dict] = {}  # payment intents, charges, balance transactions by id
        self.base_url = ""  # set by the test once served, for session URLs
        self.webhook_url: str | None = None  # where `send_event` delivers, signed with `webhook_secret`
        self.webhook_secret = ""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._index: dict[str, Any] = {"size": -1}
        self.app = self._build()

    # -- set-up helpers ------------------------------------------------------------------------------
    def add_invoice(self, invoice: dict) -> dict:
        """Store `invoice` (listed after those added before it); returns it."""
        self.invoices[invoice["id"]] = invoice
        return invoice

    def add_objects(self, *objects: dict) -> None:
        """Payment intents, charges and balance transactions that `expand[]` and retrieves can reach."""
        for obj in objects:
            self.objects[obj["id"]] = obj

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

    def add_portal_configuration(self, **fields) -> dict:
        """A Billing Portal configuration on the account (the fields given override the defaults)."""
        config = {
            "id": f"bpc_{next(self._ids):04d}",
            "object": "billing_portal.configuration",
            "active": True,
            "is_default": False,
            "livemode": self.livemode,
            "metadata": {},
            "created": next(self._ids),
            "features": {"payment_method_update": {"enabled": True}},
            **fields,
        }
        self.portal_configurations[config["id"]] = config
        return config

    def add_webhook_endpoint(self, url: str, events: list[str], status: str = "enabled", **fields) -> dict:
        """A webhook endpoint registered on the account."""
        endpoint = {
            "id": f"we_{next(self._ids):04d}",
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": events,
            "status": status,
            "livemode": self.livemode,
            "metadata": {},
            "api_version": None,
            **fields,
        }
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def count(self, method: str, path: str) -> int:
        """How many requests reached `method path`."""
        return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def is_missing(self, customer: str | None) -> bool:
        """Whether Stripe does not know `customer`."""
        return bool(customer) and (customer in self.missing_customers or customer.startswith("cus_missing"))

    # -- what Stripe does by itself ---------------------------------------------------------------------
    def fail_payment(self, email: str, name: str, amount: int, customer: str | None = None) -> dict:
        """Open an invoice whose first charge failed, and deliver `invoice.payment_failed` for it."""
        with self._lock:
            n = next(self._ids)
        # One customer per email address, so two failures for one address are one customer's invoices.
        customer = customer or "cus_" + hashlib.sha256(email.lower().encode()).hexdigest()[:12]
        invoice_id = f"in_failed{n:04d}"
        invoice = self.add_invoice(
            stripe_objects.invoice(
                invoice_id=invoice_id,
                customer=customer,
                email=email,
                amount_due=amount,
                subscription=f"sub_{n:04d}",
                livemode=self.livemode,
                customer_name=name,
                number=f"INV-{n:04d}",
                hosted_invoice_url=f"{self.base_url}/i/{invoice_id}",
            )
        )
        status = self.send_event("invoice.payment_failed", invoice)
        return {"invoice": invoice_id, "customer": customer, "webhook_status": status}

    def pay(self, customer: str) -> list[str]:
        """The customer saved a card: their open invoices are charged now, settled, and `invoice.paid` delivered."""
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
            # Stripe's fee on a US card: 2.9% + 30 cents.
            fee = round(invoice["amount_due"] * 0.029) + 30
            self.settle(invoice["id"], amount=invoice["amount_due"], fee=fee, currency=invoice["currency"])
            self.send_event("invoice.paid", invoice)
        return [invoice["id"] for invoice in paid]

    def send_event(self, event_type: str, obj: dict) -> int:
        """Deliver a signed event to `webhook_url` as Stripe does; the app's HTTP status (0: unreachable)."""
        event = stripe_objects.event(event_type, obj, livemode=self.livemode)
        status = 0
        if self.webhook_url:
            body, headers = stripe_objects.signed(event, self.webhook_secret)
            try:
                status = requests.post(self.webhook_url, data=body, headers=headers, timeout=10).status_code
            except requests.RequestException:
                status = 0
        with self._lock:  # listed by `GET /v1/events`, undelivered ones too (what `events sync` catches up on)
            self.events.append({**event, "_delivered": 200 <= status < 300})
        return status

    def _session(self, session_id: str) -> dict | None:
        return next((s["session"] for s in self.portal_sessions if s["session"]["id"] == session_id), None)

    # -- HTTP ----------------------------------------------------------------------------------------
    def _error(self, status: int, type_: str, message: str, code: str | None = None):
        body: dict[str, Any] = {"error": {"type": type_, "message": message}}
        if code:
            body["error"]["code"] = code
        return jsonify(body), status

    def _missing(self, kind: str, object_id: str, status: int = 404):
        return self._error(status, "invalid_request_error", f"No such {kind}: '{object_id}'", "resource_missing")

    def _gate(self, params: dict):
        """The answer to give instead of serving the request, if any (auth, then the fault knobs)."""
        if not self.key_valid or not request.headers.get("Authorization", "").startswith("Bearer sk_"):
            return self._error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****0000")
        path = request.path
        with self._lock:
            if self.throttle[path] > 0:
                self.throttle[path] -= 1
                return self._error(429, "rate_limit_error", "Request rate limit exceeded.", "rate_limit")
            if self.outage[path] > 0:
                self.outage[path] -= 1
                return self._error(500, "api_error", "Something went wrong on Stripe's end.")
        if path in self.html_errors:
            status, page = self.html_errors[path]
            return Response(page, status=status, content_type="text/html")
        if self.is_missing(params.get("customer")) and request.method == "POST":
            return None  # a permanent 400 is answered as such, never masked by an injected fault
        status = self.faults.verdict()
        if status == 429:
            return self._error(429, "invalid_request_error", "Too many requests", "rate_limit")
        if status:
            return self._error(500, "api_error", "Something went wrong on Stripe's end.")
        return None

    def _page(self, items: list[dict], params: dict, url: str) -> dict:
        limit = _limit(params)
        start = 0
        if params.get("starting_after"):
            start = [item["id"] for item in items].index(params["starting_after"]) + 1
        data = items[start : start + limit]
        return {"object": "list", "url": url, "data": data, "has_more": start + limit < len(items)}

    def _invoice_ids(self, customer: str | None) -> tuple[list[str], dict[str, int] | None]:
        """The ids to list (every invoice, or one customer's), and each id's position when that is all."""
        # Rebuilt whenever invoices were added: benchmarks list tens of thousands, page by page and
        # one customer at a time, so a page costs its own length, not the account's.
        with self._lock:
            if self._index["size"] != len(self.invoices):
                ids = list(self.invoices)
                by_customer: dict[str, list[str]] = {}
                for invoice_id in ids:
                    by_customer.setdefault(self.invoices[invoice_id].get("customer"), []).append(invoice_id)
                positions = {invoice_id: n for n, invoice_id in enumerate(ids)}
                self._index = {"size": len(ids), "ids": ids, "positions": positions, "by_customer": by_customer}
            if customer:
                return self._index["by_customer"].get(customer, []), None
            return self._index["ids"], self._index["positions"]

    def _list_invoices(self, params: dict) -> dict:
        customer = params.get("customer")
        if customer in self.settled_at_send:
            return self._page([], params, "/v1/invoices")
        wanted = {k: params[k] for k in ("status", "collection_method") if params.get(k)}
        ids, positions = self._invoice_ids(customer)
        limit = _limit(params)
        start = 0
        if params.get("starting_after"):
            after = params["starting_after"]
            start = (positions[after] if positions is not None else ids.index(after)) + 1
        page: list[dict] = []
        for invoice_id in itertools.islice(ids, start, None):
            invoice = self.invoices[invoice_id]
            if all(invoice.get(k) == v for k, v in wanted.items()):
                page.append(invoice)
                if len(page) > limit:
                    break
        return {"object": "list", "url": "/v1/invoices", "data": page[:limit], "has_more": len(page) > limit}

    def _build(self) -> Flask:
        app = Flask("stripe-standin")

        @app.before_request
        def _record_and_gate():
            params = _params()
            request.environ["standin.params"] = params
            with self._lock:
                self.requests.append((request.method, request.path, params))
            refused = self._gate(params) if request.path.startswith("/v1/") else None
            if refused is not None:
                return refused
            key = request.headers.get("Idempotency-Key")
            if request.method == "POST" and key:
                with self._lock:
                    if key in self.idempotent:
                        return jsonify(self.idempotent[key])
            return None

        @app.after_request
        def _remember(response: Response) -> Response:
            key = request.headers.get("Idempotency-Key")
            if request.method == "POST" and key and response.status_code == 200 and response.is_json:
                with self._lock:
                    self.idempotent.setdefault(key, response.get_json())
            return response

        def params() -> dict:
            return request.environ["standin.params"]

        @app.get("/v1/invoices")
        def list_invoices():
            return jsonify(self._list_invoices(params()))

        @app.get("/v1/invoices/<invoice_id>")
        def get_invoice(invoice_id):
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                return self._missing("invoice", invoice_id)
            if invoice.get("customer") in self.settled_at_send:
                return jsonify({**invoice, "status": "paid", "amount_remaining": 0})
            return jsonify(stripe_objects.expand(invoice, _expand_params(), self.objects))

        @app.get("/v1/invoice_payments")
        def list_invoice_payments():
            invoice_id = params().get("invoice")
            if not invoice_id:
                return self._error(400, "invalid_request_error", "Missing required param: invoice.")
            if invoice_id not in self.invoice_payments and invoice_id not in self.invoices:
                return self._missing("invoice", invoice_id)
            page = self._page(self.invoice_payments.get(invoice_id, []), params(), "/v1/invoice_payments")
            return jsonify(stripe_objects.expand(page, _expand_params(), self.objects))

        @app.get("/v1/balance_transactions/<object_id>")
        @app.get("/v1/charges/<object_id>")
        def get_object(object_id):
            if object_id not in self.objects:
                return self._missing("object", object_id)
            return jsonify(stripe_objects.expand(self.objects[object_id], _expand_params(), self.objects))

        @app.get("/v1/payment_intents/<intent_id>")
        def get_payment_intent(intent_id):
            intent = self.payment_intents.get(intent_id) or self.objects.get(intent_id)
            if intent is None:
                return self._missing("payment_intent", intent_id)
            return jsonify(intent)

        @app.post("/v1/billing_portal/sessions")
        def create_portal_session():
            p = params()
            if not self.portal_configured and "configuration" not in p:
                return self._error(
                    400,
                    "invalid_request_error",
                    "No configuration provided and your test mode default configuration has not "
                    "been created. Provide a configuration or create your default by saving your "
                    "customer portal settings in test mode at https://dashboard.stripe.com/test/settings/billing/portal.",
                )
            customer = p.get("customer", "")
            if self.is_missing(customer):
                with self._lock:
                    self.rejections.append(customer)
                return self._missing("customer", customer, status=400)
            with self._lock:
                n = next(self._ids)
                session = {
                    "id": f"bps_{n}",
                    "object": "billing_portal.session",
                    "customer": customer,
                    "url": f"{self.base_url}/p/session/bps_{n}",
                    "livemode": self.livemode,
                    "configuration": p.get("configuration"),
                    "return_url": p.get("return_url")
                    or p.get("flow_data", {}).get("after_completion", {}).get("redirect", {}).get("return_url"),
                }
                self.portal_sessions.append(
                    {
                        "form": request.form.to_dict(),
                        "params": p,
                        "idempotency_key": request.headers.get("Idempotency-Key"),
                        "session": session,
                    }
                )
            return jsonify(session)

        @app.get("/p/session/<session_id>")
        def portal_page(session_id):
            session = self._session(session_id)
            if session is None:
                return _page("Session expired", "<p>This portal session does not exist.</p>"), 404
            owed = sum(
                i["amount_due"]
                for i in self.invoices.values()
                if i["customer"] == session["customer"] and i["status"] == "open"
            )
            return _page(
                "Update your payment method",
                f"""<p>Customer {escape(session["customer"])} owes {owed / 100:.2f}.</p>
                <form method="post" action="/p/session/{escape(session_id)}/pay">
                <p><label>Card number <input name="card" value="4242 4242 4242 4242"></label></p>
                <p><button>Save card and pay</button></p></form>""",
            )

        @app.post("/p/session/<session_id>/pay")
        def portal_pay(session_id):
            session = self._session(session_id)
            if session is None:
                return _page("Session expired", "<p>This portal session does not exist.</p>"), 404
            paid = self.pay(session["customer"])
            if request.headers.get("Accept") == "application/json":
                return jsonify({"paid": paid})
            return redirect(session.get("return_url") or "/")

        @app.get("/i/<invoice_id>")
        def hosted_invoice(invoice_id):
            return _page("Invoice", f"<p>Invoice {escape(invoice_id)}.</p>")

        @app.get("/v1/events")
        def list_events():
            p = params()
            items = list(self.events)
            if "types" in p:
                items = [e for e in items if e["type"] in p["types"]]
            if p.get("delivery_success") == "false":
                items = [e for e in items if not e.get("_delivered", False)]
            if isinstance(p.get("created"), dict) and "gte" in p["created"]:
                items = [e for e in items if e["created"] >= int(p["created"]["gte"])]
            page = self._page(items, p, "/v1/events")
            page["data"] = [{k: v for k, v in e.items() if k != "_delivered"} for e in page["data"]]
            return jsonify(page)

        @app.get("/v1/balance")
        def balance():
            return jsonify({"object": "balance", "livemode": self.livemode, "available": [], "pending": []})

        @app.get("/v1/billing_portal/configurations")
        def list_configurations():
            p = params()
            items = list(self.portal_configurations.values())
            if "is_default" in p:
                items = [c for c in items if c["is_default"] == (p["is_default"] == "true")]
            return jsonify(self._page(items, p, "/v1/billing_portal/configurations"))

        @app.post("/v1/billing_portal/configurations")
        def create_configuration():
            config = self.add_portal_configuration(features={})
            _apply_configuration(config, params())
            return jsonify(config)

        @app.get("/v1/billing_portal/configurations/<config_id>")
        def get_configuration(config_id):
            if config_id not in self.portal_configurations:
                return self._missing("configuration", config_id)
            return jsonify(self.portal_configurations[config_id])

        @app.post("/v1/billing_portal/configurations/<config_id>")
        def update_configuration(config_id):
            if config_id not in self.portal_configurations:
                return self._missing("configuration", config_id)
            _apply_configuration(self.portal_configurations[config_id], params())
            return jsonify(self.portal_configurations[config_id])

        @app.get("/v1/webhook_endpoints")
        def list_endpoints():
            return jsonify(self._page(list(self.webhook_endpoints.values()), params(), "/v1/webhook_endpoints"))

        @app.post("/v1/webhook_endpoints")
        def create_endpoint():
            p = params()
            endpoint = self.add_webhook_endpoint(
                p["url"],
                p["enabled_events"],
                metadata=p.get("metadata", {}),
                api_version=p.get("api_version"),
                description=p.get("description"),
            )
            return jsonify({**endpoint, "secret": f"whsec_created_{endpoint['id']}_secretvalue"})

        @app.post("/v1/webhook_endpoints/<endpoint_id>")
        def update_endpoint(endpoint_id):
            if endpoint_id not in self.webhook_endpoints:
                return self._missing("webhook_endpoint", endpoint_id)
            p = params()
            endpoint = self.webhook_endpoints[endpoint_id]
            if "enabled_events" in p:
                endpoint["enabled_events"] = p["enabled_events"]
            if "disabled" in p:
                endpoint["status"] = "disabled" if p["disabled"] == "true" else "enabled"
            for key in ("url", "description"):
                if key in p:
                    endpoint[key] = p[key]
            endpoint["metadata"] = {**endpoint.get("metadata", {}), **p.get("metadata", {})}
            return jsonify(endpoint)

        return app


def decode(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form/query encoding (`a[b][c]=v`, `a[0]=v`) back into nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        if not parts:
            continue
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


def _limit(params: dict) -> int:
    """A list's page size: `limit`, 10 by default, between 1 and 100 as Stripe allows."""
    return max(1, min(int(params.get("limit", 10)), 100))


def _params() -> dict:
    """The request's query and form parameters, decoded."""
    pairs = list(request.args.items(multi=True))
    if request.method == "POST":
        pairs += list(request.form.items(multi=True))
    return decode(pairs)


def _expand_params() -> list[str]:
    """`expand[]` values as the SDK sends them (`expand[0]=...`, or `expand[]=...`)."""
    return [value for key, value in request.args.items(multi=True) if key.startswith("expand[")]


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>{body}"


def _typed(value):
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


def _apply_configuration(config: dict, params: dict) -> None:
    """A Billing Portal configuration create/update: nested features merge, booleans become booleans."""
    for key, value in params.items():
        if key in ("features", "business_profile", "metadata"):
            merged = config.setdefault(key, {})
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict):
                    merged.setdefault(sub, {}).update({k: _typed(v) for k, v in subvalue.items()})
                else:
                    merged[sub] = _typed(subvalue)
        else:
            config[key] = _typed(value)
