"""A stand-in for the Paddle Billing API (v1): customers, subscriptions, transactions, and signed webhooks.

Shapes follow PaddleHQ/paddle-openapi v1/openapi.yaml (read at commit 792a49e, 2025-05-27):
- every answer is `{"data": ..., "meta": {"request_id": ...}}`; lists add `meta.pagination`
  `{per_page, next, has_more, estimated_total}`, where `next` is an absolute URL carrying the original
  query plus `after=<last id>` (returned even when `has_more` is false);
- GET /transactions takes `per_page` up to 30 (default 30), filters `status`, `customer_id`,
  `subscription_id` as comma-separated lists, and is ordered by id ascending (`order_by` default);
- `include=customer,address` (GET /transactions and GET /transactions/{id}) embeds the related customer
  and address entities;
- amounts are strings of minor units in `details.totals`; failed payment attempts sit in `payments[]`
  with `status: "error"` and an `error_code` (declined, insufficient_funds, expired_card...);
- errors are `{"error": {type, code, detail, documentation_url}, "meta": {request_id}}`: 404 `not_found`
  ("Entity txn_… not found"), 401 `authentication_missing` / `authentication_malformed`, 403
  `invalid_token` (status UNCONFIRMED: Paddle documents the code, not which of 401/403 it comes with),
  429 `too_many_requests` with Retry-After, 500 `internal_error`;
- GET /subscriptions/{id}/update-payment-method-transaction: past_due -> the latest past_due transaction;
  active -> a new zero-amount `ready` transaction with origin `subscription_payment_method_change`;
  manual collection -> 400 `subscription_not_automatic_collection`; canceled -> 400
  `subscription_is_canceled_action_invalid`, paused -> 400 `subscription_is_inactive_action_invalid`
  (those two codes are from Paddle's error list; which one Paddle picks here is UNCONFIRMED).

Also serves `/paddle.js`, a stub of https://cdn.paddle.com/paddle/v2/paddle.js for browser tests (the
real script loads Paddle's checkout from Paddle's hosts): `Paddle.Environment.set`, `Paddle.Initialize`
and `Paddle.Checkout.open` record their arguments on `window.__paddleCalls`; `window.__paddleComplete()`
fires the `eventCallback` with `{name: "checkout.completed", data: {transaction_id}}`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request

from tests.standins import Faults

API_KEY = "pdl_sdbx_apikey_01hstandin0000000000000000_standinkey"
WEBHOOK_SECRET = "pdl_ntfset_01hstandin00000000000000_secretkey"
TRANSACTIONS_MAX_PER_PAGE = 30
DOCS = "https://developer.paddle.com/errors/shared/"

PADDLE_JS = """(function () {
  var calls = (window.__paddleCalls = window.__paddleCalls || []);
  var state = { environment: "production", token: null, eventCallback: null, opened: null };
  function record(name, args) { calls.push({ name: name, args: JSON.parse(JSON.stringify(args || null)) }); }
  window.Paddle = {
    Environment: { set: function (env) { record("Environment.set", env); state.environment = env; } },
    Initialize: function (options) {
      if (state.token) { throw new Error("Paddle.Initialize may be called only once"); }
      record("Initialize", { token: options && options.token });
      state.token = options && options.token;
      state.eventCallback = options && options.eventCallback;
    },
    Checkout: {
      open: function (options) {
        if (!state.token) { throw new Error("Paddle.Initialize must be called before Checkout.open"); }
        record("Checkout.open", options);
        state.opened = options;
        if (state.eventCallback) { state.eventCallback({ name: "checkout.loaded", data: {} }); }
      },
      close: function () { record("Checkout.close", null); }
    },
    Status: { libraryVersion: "stand-in" }
  };
  window.__paddleComplete = function () {
    var txn = state.opened && state.opened.transactionId;
    if (state.eventCallback) {
      state.eventCallback({ name: "checkout.completed", data: { transaction_id: txn, status: "completed" } });
    }
  };
})();
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _zero_totals(currency: str, total: int = 0) -> dict[str, Any]:
    return {
        "subtotal": str(total),
        "tax": "0",
        "discount": "0",
        "total": str(total),
        "fee": None,
        "credit": "0",
        "credit_to_balance": "0",
        "balance": str(total),
        "grand_total": str(total),
        "grand_total_tax": "0",
        "earnings": None,
        "currency_code": currency,
    }


def sign(body: bytes, secret: str, ts: int) -> str:
    """Paddle's h1: HMAC-SHA256(secret, f"{ts}:{body}") as hex."""
    return hmac.new(secret.encode(), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()


def signed_webhook(
    event: dict[str, Any], secret: str = WEBHOOK_SECRET, ts: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a Paddle notification delivery of `event`, signed with `secret`."""
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = int(time.time()) if ts is None else ts
    headers = {"Content-Type": "application/json", "Paddle-Signature": f"ts={stamp};h1={sign(body, secret, stamp)}"}
    return body, headers


class PaddleStandIn:
    """State and recorded requests; `app` is the Flask app to serve (see tests.standins.serve)."""

    def __init__(self, api_key: str = API_KEY, faults: Faults | None = None, checkout_url: str = ""):
        self.api_key = api_key
        self.faults = faults or Faults()
        self.checkout_url = checkout_url or "https://merchant.example/pay"  # the account's default payment link
        self.customers: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.addresses: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # {method, path, query}; never the Authorization header
        self.retry_after = "3"  # Retry-After on injected 429s
        self.base_url = ""  # set once served, for `meta.pagination.next`
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.app = self._build()

    # -- seeding and state changes -------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        # Paddle ids are a prefix and 26 lowercase base32 characters.
        return f"{prefix}_01hs{next(self._ids):022d}"

    def add_customer(
        self, email: str = "ada@example.com", name: str | None = "Ada Lovelace", **extra: Any
    ) -> dict[str, Any]:
        """A customer entity, stored and returned."""
        now = _iso(_now())
        customer = {
            "id": self._id("ctm"),
            "name": name,
            "email": email,
            "marketing_consent": False,
            "status": "active",
            "custom_data": None,
            "locale": "en",
            "created_at": now,
            "updated_at": now,
            "import_meta": None,
            **extra,
        }
        with self._lock:
            self.customers[customer["id"]] = customer
        return customer

    def add_subscription(
        self,
        customer_id: str,
        *,
        status: str = "active",
        currency: str = "USD",
        unit_amount: int = 4900,
        collection_mode: str = "automatic",
        country_code: str = "US",
        **extra: Any,
    ) -> dict[str, Any]:
        """A monthly subscription entity with one item priced `unit_amount` minor units, billed to an
        address in `country_code`."""
        now = _now()
        sub_id = self._id("sub")
        address = self.add_address(customer_id, country_code)
        subscription = {
            "id": sub_id,
            "status": status,
            "customer_id": customer_id,
            "address_id": address["id"],
            "business_id": None,
            "currency_code": currency,
            "created_at": _iso(now - timedelta(days=40)),
            "updated_at": _iso(now),
            "started_at": _iso(now - timedelta(days=40)),
            "first_billed_at": _iso(now - timedelta(days=40)),
            "next_billed_at": _iso(now + timedelta(days=20)) if status in ("active", "past_due") else None,
            "paused_at": None,
            "canceled_at": None,
            "discount": None,
            "collection_mode": collection_mode,
            "billing_details": None,
            "current_billing_period": {
                "starts_at": _iso(now - timedelta(days=10)),
                "ends_at": _iso(now + timedelta(days=20)),
            },
            "billing_cycle": {"interval": "month", "frequency": 1},
            "scheduled_change": None,
            "management_urls": {
                "update_payment_method": f"https://customer-portal.paddle.com/cpl_standin/update?token=tmp_{sub_id}"
                if collection_mode == "automatic"
                else None,
                "cancel": f"https://customer-portal.paddle.com/cpl_standin/cancel?token=tmp_{sub_id}",
            },
            "items": [self._subscription_item(currency, unit_amount, now)],
            "custom_data": None,
            "import_meta": None,
            **extra,
        }
        with self._lock:
            self.subscriptions[sub_id] = subscription
        return subscription

    def add_address(self, customer_id: str, country_code: str = "US") -> dict[str, Any]:
        """A customer's address entity (Paddle keeps only the country and postcode for most)."""
        now = _iso(_now())
        address = {
            "id": self._id("add"),
            "customer_id": customer_id,
            "description": None,
            "first_line": None,
            "second_line": None,
            "city": None,
            "postal_code": None,
            "region": None,
            "country_code": country_code,
            "custom_data": None,
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "import_meta": None,
        }
        with self._lock:
            self.addresses[address["id"]] = address
        return address

    def _price(self, currency: str, unit_amount: int, now: datetime) -> dict[str, Any]:
        return {
            "id": "pri_01hstandin0000000000000001",
            "product_id": "pro_01hstandin0000000000000001",
            "type": "standard",
            "description": "Monthly",
            "name": "Monthly",
            "billing_cycle": {"interval": "month", "frequency": 1},
            "trial_period": None,
            "tax_mode": "account_setting",
            "unit_price": {"amount": str(unit_amount), "currency_code": currency},
            "unit_price_overrides": [],
            "quantity": {"minimum": 1, "maximum": 1},
            "status": "active",
            "custom_data": None,
            "import_meta": None,
            "created_at": _iso(now - timedelta(days=400)),
            "updated_at": _iso(now - timedelta(days=400)),
        }

    def _subscription_item(self, currency: str, unit_amount: int, now: datetime) -> dict[str, Any]:
        return {
            "status": "active",
            "quantity": 1,
            "recurring": True,
            "created_at": _iso(now - timedelta(days=40)),
            "updated_at": _iso(now - timedelta(days=40)),
            "previously_billed_at": _iso(now - timedelta(days=10)),
            "next_billed_at": _iso(now + timedelta(days=20)),
            "trial_dates": None,
            "price": self._price(currency, unit_amount, now),
            "product": {
                "id": "pro_01hstandin0000000000000001",
                "name": "Pro plan",
                "type": "standard",
                "tax_category": "standard",
                "description": None,
                "image_url": None,
                "custom_data": None,
                "status": "active",
                "import_meta": None,
                "created_at": _iso(now - timedelta(days=400)),
                "updated_at": _iso(now - timedelta(days=400)),
            },
        }

    def add_transaction(
        self,
        customer_id: str | None,
        *,
        subscription_id: str | None = None,
        status: str = "past_due",
        total: int = 4900,
        currency: str = "USD",
        origin: str = "subscription_recurring",
        failed_attempts: int = 1,
        error_code: str = "declined",
        **extra: Any,
    ) -> dict[str, Any]:
        """A transaction entity; `past_due` ones carry `failed_attempts` payment errors with `error_code`."""
        now = _now()
        txn_id = self._id("txn")
        payments = [
            {
                "payment_attempt_id": str(uuid.uuid4()),
                "stored_payment_method_id": str(uuid.uuid4()),
                "payment_method_id": "paymtd_01hstandin0000000000000001",
                "amount": str(total),
                "status": "error",
                "error_code": error_code,
                "method_details": {
                    "type": "card",
                    "card": {
                        "type": "visa",
                        "last4": "0002",
                        "expiry_month": 1,
                        "expiry_year": 2030,
                        "cardholder_name": "Ada Lovelace",
                    },
                },
                "created_at": _iso(now - timedelta(days=failed_attempts - n)),
                "captured_at": None,
            }
            for n in range(failed_attempts if status == "past_due" else 0)
        ]
        transaction = {
            "id": txn_id,
            "status": status,
            "customer_id": customer_id,
            "address_id": None,
            "business_id": None,
            "custom_data": None,
            "currency_code": currency,
            "origin": origin,
            "subscription_id": subscription_id,
            "invoice_id": f"inv_{txn_id[4:]}" if status in ("billed", "past_due", "paid", "completed") else None,
            "invoice_number": f"325-{next(self._ids):05d}"
            if status in ("billed", "past_due", "paid", "completed")
            else None,
            "collection_mode": "automatic",
            "discount_id": None,
            "billing_details": None,
            "billing_period": {"starts_at": _iso(now - timedelta(days=1)), "ends_at": _iso(now + timedelta(days=29))},
            "items": [{"price": self._price(currency, total, now), "quantity": 1, "proration": None}],
            "details": {
                "tax_rates_used": [],
                "totals": _zero_totals(currency, total),
                "adjusted_totals": {
                    **{
                        k: v
                        for k, v in _zero_totals(currency, total).items()
                        if k
                        in (
                            "subtotal",
                            "tax",
                            "total",
                            "grand_total",
                            "grand_total_tax",
                            "fee",
                            "earnings",
                            "currency_code",
                        )
                    },
                    "retained_fee": "0",
                },
                "payout_totals": None,
                "adjusted_payout_totals": None,
                "line_items": [],
            },
            "payments": payments,
            "checkout": {"url": f"{self.checkout_url}?_ptxn={txn_id}"},
            "created_at": _iso(now - timedelta(days=failed_attempts)),
            "updated_at": _iso(now),
            "billed_at": _iso(now - timedelta(days=failed_attempts)) if status != "draft" else None,
            "revised_at": None,
            **extra,
        }
        with self._lock:
            self.transactions[txn_id] = transaction
        return transaction

    def fail_renewal(self, sub_id: str, *, error_code: str = "declined", attempts: int = 1) -> dict[str, Any]:
        """The subscription's renewal failed: a past_due transaction, and the subscription goes past_due."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            amount = int(sub["items"][0]["price"]["unit_price"]["amount"])
            txn = self.add_transaction(
                sub["customer_id"],
                subscription_id=sub_id,
                total=amount,
                currency=sub["currency_code"],
                failed_attempts=attempts,
                error_code=error_code,
                address_id=sub["address_id"],
            )
            sub["status"] = "past_due"
            sub["updated_at"] = _iso(_now())
        return txn

    def pay_transaction(self, txn_id: str) -> dict[str, Any]:
        """The customer paid (e.g. completed the update-payment checkout): completed, subscription active."""
        with self._lock:
            txn = self.transactions[txn_id]
            now = _iso(_now())
            txn["payments"].insert(
                0,
                {
                    "payment_attempt_id": str(uuid.uuid4()),
                    "stored_payment_method_id": str(uuid.uuid4()),
                    "payment_method_id": "paymtd_01hstandin0000000000000002",
                    "amount": txn["details"]["totals"]["grand_total"],
                    "status": "captured",
                    "error_code": None,
                    "method_details": {
                        "type": "card",
                        "card": {
                            "type": "mastercard",
                            "last4": "4444",
                            "expiry_month": 12,
                            "expiry_year": 2031,
                            "cardholder_name": "Ada Lovelace",
                        },
                    },
                    "created_at": now,
                    "captured_at": now,
                },
            )
            txn["status"] = "completed"
            txn["details"]["totals"]["balance"] = "0"
            txn["updated_at"] = now
            sub = self.subscriptions.get(txn.get("subscription_id") or "")
            if sub is not None and sub["status"] == "past_due":
                still_due = [
                    t
                    for t in self.transactions.values()
                    if t["subscription_id"] == sub["id"] and t["status"] == "past_due"
                ]
                if not still_due:
                    sub["status"] = "active"
                    sub["updated_at"] = now
        return txn

    def cancel_subscription(self, sub_id: str) -> dict[str, Any]:
        """Dunning ran out: the subscription is canceled and its open past_due transactions canceled."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            now = _iso(_now())
            sub.update(status="canceled", canceled_at=now, next_billed_at=None, updated_at=now)
            sub["management_urls"]["update_payment_method"] = None
            for txn in self.transactions.values():
                if txn["subscription_id"] == sub_id and txn["status"] == "past_due":
                    txn.update(status="canceled", updated_at=now)
        return sub

    def event(self, event_type: str, data: dict[str, Any], occurred_at: datetime | None = None) -> dict[str, Any]:
        """A notification envelope for `data` (a copy, as Paddle sends a snapshot)."""
        return {
            "event_id": self._id("evt"),
            "event_type": event_type,
            "occurred_at": _iso(occurred_at or _now()),
            "notification_id": self._id("ntf"),
            "data": json.loads(json.dumps(data)),
        }

    # -- HTTP ----------------------------------------------------------------------------------------

    def _error(
        self, status: int, code: str, detail: str, type_: str = "request_error", headers: dict[str, str] | None = None
    ) -> Response:
        body = {
            "error": {"type": type_, "code": code, "detail": detail, "documentation_url": DOCS + code},
            "meta": {"request_id": str(uuid.uuid4())},
        }
        response = jsonify(body)
        response.status_code = status
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def _ok(self, data: Any, pagination: dict[str, Any] | None = None) -> Response:
        meta: dict[str, Any] = {"request_id": str(uuid.uuid4())}
        if pagination is not None:
            meta["pagination"] = pagination
        return jsonify({"data": data, "meta": meta})

    def _with_includes(self, txn: dict[str, Any]) -> dict[str, Any]:
        """A copy of `txn` with the related entities the request's `include` names (customer, address)."""
        data: dict[str, Any] = json.loads(json.dumps(txn))
        includes = set(filter(None, request.args.get("include", "").split(",")))
        if "customer" in includes and txn["customer_id"] in self.customers:
            data["customer"] = json.loads(json.dumps(self.customers[txn["customer_id"]]))
        if "address" in includes and txn.get("address_id") in self.addresses:
            data["address"] = json.loads(json.dumps(self.addresses[txn["address_id"]]))
        return data

    def _not_found(self, entity_id: str) -> Response:
        return self._error(404, "not_found", f"Entity {entity_id} not found")

    def _build(self) -> Flask:
        app = Flask("paddle-standin")

        @app.before_request
        def _gate() -> Response | None:
            if request.path == "/paddle.js":
                return None
            with self._lock:
                self.requests.append({"method": request.method, "path": request.path, "query": request.args.to_dict()})
            auth = request.headers.get("Authorization")
            if not auth:
                return self._error(401, "authentication_missing", "Authentication header missing")
            if not auth.startswith("Bearer ") or len(auth.split()) != 2:
                return self._error(401, "authentication_malformed", "Authentication header invalid")
            if auth.split()[1] != self.api_key:
                return self._error(403, "invalid_token", "Invalid API key")
            status = self.faults.verdict()
            if status == 429:
                return self._error(
                    429,
                    "too_many_requests",
                    "Too many requests from this IP",
                    headers={"Retry-After": self.retry_after},
                )
            if status:
                return self._error(
                    500, "internal_error", "There's a temporary problem with the Paddle API", type_="api_error"
                )
            return None

        @app.get("/paddle.js")
        def paddle_js() -> Response:
            return Response(PADDLE_JS, mimetype="application/javascript")

        @app.get("/transactions/<txn_id>")
        def get_transaction(txn_id: str) -> Response:
            with self._lock:
                txn = self.transactions.get(txn_id)
                if txn is None:
                    return self._not_found(txn_id)
                data = self._with_includes(txn)
            return self._ok(data)

        @app.get("/transactions")
        def list_transactions() -> Response:
            args = request.args
            try:
                per_page = min(int(args.get("per_page", TRANSACTIONS_MAX_PER_PAGE)), TRANSACTIONS_MAX_PER_PAGE)
            except ValueError:
                return self._error(400, "invalid_field", "per_page must be an integer")
            if per_page < 1:
                return self._error(400, "invalid_field", "per_page must be at least 1")
            filters = {
                name: set(args[name].split(","))
                for name in ("status", "customer_id", "subscription_id", "id")
                if args.get(name)
            }
            with self._lock:
                rows = sorted(
                    (
                        t
                        for t in self.transactions.values()
                        if all(str(t.get(name)) in wanted for name, wanted in filters.items())
                    ),
                    key=lambda t: t["id"],
                )
                total = len(rows)
                after = args.get("after")
                if after:
                    rows = [t for t in rows if t["id"] > after]
                page = [self._with_includes(t) for t in rows[:per_page]]
            has_more = len(rows) > per_page
            query = {k: v for k, v in args.items() if k != "after"}
            last = page[-1]["id"] if page else after or ""
            next_url = (
                f"{self.base_url or request.host_url.rstrip('/')}/transactions?{urlencode({**query, 'after': last})}"
            )
            return self._ok(
                page, {"per_page": per_page, "next": next_url, "has_more": has_more, "estimated_total": total}
            )

        @app.get("/customers/<ctm_id>")
        def get_customer(ctm_id: str) -> Response:
            with self._lock:
                customer = self.customers.get(ctm_id)
                return self._ok(customer) if customer else self._not_found(ctm_id)

        @app.get("/subscriptions/<sub_id>")
        def get_subscription(sub_id: str) -> Response:
            with self._lock:
                sub = self.subscriptions.get(sub_id)
                return self._ok(sub) if sub else self._not_found(sub_id)

        @app.get("/subscriptions/<sub_id>/update-payment-method-transaction")
        def update_payment_method_transaction(sub_id: str) -> Response:
            with self._lock:
                sub = self.subscriptions.get(sub_id)
                if sub is None:
                    return self._not_found(sub_id)
                if sub["collection_mode"] != "automatic":
                    return self._error(
                        400, "subscription_not_automatic_collection", "Subscription not in automatic collection mode"
                    )
                if sub["status"] == "canceled":
                    return self._error(
                        400,
                        "subscription_is_canceled_action_invalid",
                        "Action can't be performed on canceled subscription",
                    )
                if sub["status"] == "past_due":
                    due = sorted(
                        (
                            t
                            for t in self.transactions.values()
                            if t["subscription_id"] == sub_id and t["status"] == "past_due"
                        ),
                        key=lambda t: (t["created_at"], t["id"]),
                    )
                    if due:
                        return self._ok(due[-1])
                if sub["status"] not in ("active", "past_due"):
                    return self._error(
                        400,
                        "subscription_is_inactive_action_invalid",
                        "Action can't be performed on inactive subscription",
                    )
                currency = sub["currency_code"]
                txn = self.add_transaction(
                    sub["customer_id"],
                    subscription_id=sub_id,
                    status="ready",
                    total=0,
                    currency=currency,
                    origin="subscription_payment_method_change",
                    failed_attempts=0,
                )
                txn["billed_at"] = None
                return self._ok(txn)

        return app
