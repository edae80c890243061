"""A stand-in for the Recurly API v2021-02-25: accounts, invoices, collection, and the hosted billing page.

Shapes follow openapi/api.yaml of github.com/recurly/recurly-client-python: resources are returned
bare (`{"id": ..., "object": "invoice", ...}`), lists as `{"object": "list", "has_more", "next", "data"}`
with `next` a path carrying a `cursor`, errors as `{"error": {"type", "message", "params"}}`. Money is a
JSON number in major units. Requests need `Accept: application/vnd.recurly.v2021-02-25` (406 otherwise)
and HTTP basic auth with the API key as username (401 otherwise). Every answer carries the
`X-RateLimit-*` headers. `/account/billing_info/edit?ht=<hosted_login_token>` serves the hosted
"update billing information" page (at Recurly: `https://{subdomain}.recurly.com/...`).
`signed_webhook` builds a JSON webhook body and its `recurly-signature` header.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from tests.standins import Faults

API_VERSION = "v2021-02-25"
ACCEPTED = (f"application/vnd.recurly.{API_VERSION}", f"application/vnd.recurly.{API_VERSION}+json")
INVOICE_STATES = ("open", "pending", "processing", "past_due", "paid", "closed", "failed", "voided")
STATE_FILTERS = ("pending", "past_due", "paid", "failed")  # InvoiceStateQueryParamEnum
LIST_PARAMS = {"ids", "limit", "order", "sort", "begin_time", "end_time", "type", "state", "cursor"}
RATE_LIMIT = 400  # sandbox sites


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount(value: int | float | str | Decimal) -> float | int:
    # Recurly sends JSON numbers; keep integers integral (JPY 500, not 500.0).
    if isinstance(value, int):
        return value
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() and "." not in str(value) else float(number)


def signed_webhook(
    payload: dict[str, Any], secret: str, timestamp_ms: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Recurly POSTs for a JSON webhook signed with `secret`.

    `recurly-signature: <unix ms>,<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"recurly-signature": f"{timestamp},{signature}", "Content-Type": "application/json"}


class RecurlyStandIn:
    """State and recorded requests; `app` is the Flask app to serve (see `tests.standins.serve`)."""

    signed_webhook = staticmethod(signed_webhook)

    def __init__(
        self,
        api_key: str = "0123456789abcdef0123456789abcdef",
        subdomain: str = "acme",
        faults: Faults | None = None,
        mode: str = "sandbox",
    ) -> None:
        self.api_key = api_key
        self.subdomain = subdomain
        self.mode = mode  # the site's mode: development, sandbox or production
        self.site_id = "r23khg9b5kyb"
        self.faults = faults or Faults()
        self.accounts: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.card_works: dict[str, bool] = {}  # account id -> does a collection succeed
        self.collections: list[dict[str, Any]] = []  # {"invoice_id", "outcome"} per PUT /collect
        self.page_visits: list[str] = []  # hosted_login_tokens used on the billing-info page
        self.requests: list[tuple[str, str]] = []
        self.url = ""  # set by a test once served
        self._numbers = itertools.count(1001)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    # -- seeding ---------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids):010d}"[-13:]

    def add_account(
        self,
        code: str,
        *,
        email: str = "ada@example.com",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        company: str | None = None,
        country: str = "US",
        card_works: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return an Account; `card_works` decides what a forced collection does."""
        now = _iso(time.time())
        account = {
            "id": self._next_id("a"),
            "object": "account",
            "state": "active",
            "hosted_login_token": secrets.token_hex(16),  # 32 characters, as Recurly's
            "shipping_addresses": [],
            "has_live_subscription": True,
            "has_active_subscription": True,
            "has_future_subscription": False,
            "has_canceled_subscription": False,
            "has_paused_subscription": False,
            "has_past_due_invoice": False,
            "created_at": now,
            "updated_at": now,
            "code": code,
            "username": None,
            "email": email,
            "preferred_locale": None,
            "cc_emails": None,
            "first_name": first_name,
            "last_name": last_name,
            "company": company,
            "vat_number": None,
            "tax_exempt": False,
            "bill_to": "self",
            "address": {"country": country},
            "billing_info": None,
            "custom_fields": [],
            **extra,
        }
        self.accounts[account["id"]] = account
        self.card_works[account["id"]] = card_works
        return account

    def add_invoice(
        self,
        account_code: str,
        *,
        state: str = "past_due",
        total: int | float | str | Decimal = "49.00",
        paid: int | float | str | Decimal = 0,
        currency: str = "USD",
        subscription_ids: list[str] | None = None,
        dunning_events_sent: int = 1,
        final_dunning_event: bool = False,
        collection_method: str = "automatic",
        failed_transactions: int = 1,
        number: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return a charge Invoice of the account with `account_code`; amounts in major units."""
        if state not in INVOICE_STATES:
            raise ValueError(f"state must be one of {INVOICE_STATES}")
        account = self._account_by_code(account_code)
        created = time.time() - 86400
        invoice_id = self._next_id("i")
        total_d, paid_d = Decimal(str(total)), Decimal(str(paid))
        invoice = {
            "id": invoice_id,
            "uuid": secrets.token_hex(16),
            "object": "invoice",
            "type": "charge",
            "origin": "renewal",
            "state": state,
            "account": self._account_mini(account),
            "billing_info_id": None,
            "subscription_ids": subscription_ids if subscription_ids is not None else [self._next_id("s")],
            "previous_invoice_id": None,
            "number": number or str(next(self._numbers)),
            "collection_method": collection_method,
            "po_number": None,
            "net_terms": 0,
            "net_terms_type": "net",
            "address": {"first_name": account["first_name"], "last_name": account["last_name"], "country": "US"},
            "currency": currency,
            "discount": 0,
            "subtotal": _amount(total),
            "tax": 0,
            "total": _amount(total),
            "refundable_amount": _amount(paid),
            "paid": _amount(paid),
            "balance": _amount(total_d - paid_d),
            "line_items": [],
            "has_more_line_items": False,
            "transactions": [],
            "credit_payments": [],
            "created_at": _iso(created),
            "updated_at": _iso(created),
            "due_at": _iso(created),
            "closed_at": _iso(time.time()) if state in ("paid", "closed", "failed", "voided") else None,
            "dunning_campaign_id": None,
            "dunning_events_sent": dunning_events_sent,
            "final_dunning_event": final_dunning_event,
            "business_entity_id": None,
            **extra,
        }
        for _ in range(failed_transactions):
            # The declined renewal charge happened when the invoice was created, not when it was seeded.
            invoice["transactions"].append(self._transaction(invoice, success=False, at=created))
        self.invoices[invoice_id] = invoice
        return invoice

    @staticmethod
    def notification(object_type: str, event_type: str, **identifiers: Any) -> dict[str, Any]:
        """A thin JSON notification, e.g. `notification("charge_invoice", "past_due", invoice_number=1001)`."""
        return {
            "id": secrets.token_hex(6),
            "object_type": object_type,
            "site_id": "r23khg9b5kyb",
            "event_type": event_type,
            "event_time": _iso(time.time()),
            **identifiers,
        }

    # -- state changes -------------------------------------------------------------------------------

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice is paid in full."""
        invoice = self.invoices[invoice_id]
        invoice["transactions"].append(self._transaction(invoice, success=True))
        invoice.update(state="paid", paid=invoice["total"], balance=0, closed_at=_iso(time.time()))
        invoice["updated_at"] = _iso(time.time())
        return invoice

    def fail_invoice(self, invoice_id: str) -> dict[str, Any]:
        """Dunning ended without payment: the invoice is failed (closed unpaid)."""
        invoice = self.invoices[invoice_id]
        invoice.update(state="failed", closed_at=_iso(time.time()), final_dunning_event=True)
        invoice["updated_at"] = _iso(time.time())
        return invoice

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The merchant voided the invoice."""
        invoice = self.invoices[invoice_id]
        invoice.update(state="voided", balance=0, closed_at=_iso(time.time()))
        invoice["updated_at"] = _iso(time.time())
        return invoice

    def send_dunning_event(self, invoice_id: str, final: bool = False) -> dict[str, Any]:
        """Recurly's dunning sent one more notice for the invoice."""
        invoice = self.invoices[invoice_id]
        invoice["dunning_events_sent"] += 1
        invoice["final_dunning_event"] = final
        return invoice

    def update_billing_info(self, account_id: str, card_works: bool = True) -> None:
        """The customer saved a new card (so the next collection succeeds, or not)."""
        self.card_works[account_id] = card_works

    def rotate_login_token(self, code: str) -> str:
        """Recurly replaced the account's hosted_login_token (e.g. after it leaked); the old one stops working."""
        account = self._account_by_code(code)
        account["hosted_login_token"] = secrets.token_hex(16)
        return str(account["hosted_login_token"])

    # -- helpers ---------------------------------------------------------------------------------------

    def _account_by_code(self, code: str) -> dict[str, Any]:
        for account in self.accounts.values():
            if account["code"] == code:
                return account
        raise KeyError(code)

    def _account_mini(self, account: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": account["id"],
            "object": "account",
            "code": account["code"],
            "email": account["email"],
            "first_name": account["first_name"],
            "last_name": account["last_name"],
            "company": account["company"],
            "parent_account_id": None,
            "bill_to": "self",
            "dunning_campaign_id": None,
        }

    def _transaction(self, invoice: dict[str, Any], success: bool, at: float | None = None) -> dict[str, Any]:
        return {
            "id": self._next_id("t"),
            "object": "transaction",
            "uuid": secrets.token_hex(16),
            "type": "purchase",
            "origin": "recurring",
            "currency": invoice["currency"],
            "amount": invoice["balance"] if "balance" in invoice else invoice["total"],
            "status": "success" if success else "declined",
            "success": success,
            "status_code": None if success else "insufficient_funds",
            "status_message": None if success else "The transaction was declined due to insufficient funds.",
            "collection_method": "automatic",
            "created_at": _iso(time.time() if at is None else at),
        }

    def _find_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        if invoice_id.startswith("number-"):
            number = invoice_id[len("number-") :]
            return next((inv for inv in self.invoices.values() if inv["number"] == number), None)
        return self.invoices.get(invoice_id)

    def _find_account(self, account_id: str) -> dict[str, Any] | None:
        if account_id.startswith("code-"):
            code = account_id[len("code-") :]
            return next((acc for acc in self.accounts.values() if acc["code"] == code), None)
        return self.accounts.get(account_id)

    def _account_view(self, account: dict[str, Any]) -> dict[str, Any]:
        view = dict(account)
        view["has_past_due_invoice"] = any(
            inv["account"]["id"] == account["id"] and inv["state"] == "past_due" for inv in self.invoices.values()
        )
        return view

    # -- HTTP ----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(RATE_LIMIT - 1),
            "X-RateLimit-Reset": str(int(time.time()) + 1),
            "Recurly-Version": f"recurly.{API_VERSION}",
        }

    def _error(self, status: int, type_: str, message: str, **extra: Any) -> tuple[Response, int, dict[str, str]]:
        return jsonify({"error": {"type": type_, "message": message, **extra}}), status, self._headers()

    def _not_found(self, kind: str, object_id: str) -> tuple[Response, int, dict[str, str]]:
        return self._error(404, "not_found", f"Couldn't find {kind.title()} with id = {object_id}", params=[])

    def _build(self) -> Flask:
        app = Flask("recurly-standin")

        @app.before_request
        def _gate() -> Any:
            with self._lock:
                self.requests.append((request.method, request.full_path.rstrip("?")))
            if request.path.startswith("/account/"):
                return None  # the hosted pages: a customer's browser, no API key
            auth = request.authorization
            if auth is None or auth.type != "basic" or auth.username != self.api_key:
                return self._error(401, "unauthorized", "Invalid API key. Please use a valid private API key.")
            if request.headers.get("Accept", "") not in ACCEPTED:
                return self._error(
                    406,
                    "invalid_api_version",
                    "That accept header isn't in the format we use to specify an API version.",
                    acceptable_accept_headers=[ACCEPTED[0]],
                )
            status = self.faults.verdict()
            if status == 429:
                return self._error(429, "rate_limited", "You made too many API requests in the current window.")
            if status:
                return self._error(500, "internal_server_error", "An internal server error has occurred.")
            return None

        @app.after_request
        def _rate_headers(response: Response) -> Response:
            if not request.path.startswith("/account/"):
                for key, value in self._headers().items():
                    response.headers.setdefault(key, value)
            return response

        @app.errorhandler(HTTPException)
        def _http_error(exc: HTTPException) -> Any:
            if request.path.startswith("/account/"):
                return exc
            return self._error(exc.code or 500, "bad_request", exc.description or "bad request")

        @app.get("/invoices/<invoice_id>")
        def get_invoice(invoice_id: str) -> Any:
            invoice = self._find_invoice(invoice_id)
            return jsonify(invoice) if invoice else self._not_found("invoice", invoice_id)

        @app.get("/accounts/<account_id>")
        def get_account(account_id: str) -> Any:
            account = self._find_account(account_id)
            return jsonify(self._account_view(account)) if account else self._not_found("account", account_id)

        @app.get("/invoices")
        def list_invoices() -> Any:
            return self._list(list(self.invoices.values()), "/invoices")

        @app.get("/accounts/<account_id>/invoices")
        def list_account_invoices(account_id: str) -> Any:
            account = self._find_account(account_id)
            if account is None:
                return self._not_found("account", account_id)
            invoices = [inv for inv in self.invoices.values() if inv["account"]["id"] == account["id"]]
            return self._list(invoices, f"/accounts/{account_id}/invoices")

        @app.put("/invoices/<invoice_id>/collect")
        def collect_invoice(invoice_id: str) -> Any:
            return self._collect(invoice_id)

        @app.get("/sites")
        def list_sites() -> Any:
            site = {"id": self.site_id, "object": "site", "subdomain": self.subdomain, "mode": self.mode}
            return jsonify({"object": "list", "has_more": False, "next": None, "data": [site]})

        @app.get("/account/billing_info/edit")
        def billing_info_page() -> Any:
            token = request.args.get("ht", "")
            account = next((a for a in self.accounts.values() if a["hosted_login_token"] == token), None)
            if not token or account is None:
                return "<html><body><h1>Invalid or expired link</h1></body></html>", 404
            with self._lock:
                self.page_visits.append(token)
            return (
                "<html><head><title>Update billing information</title></head><body>"
                f"<h1>{self.subdomain}: update billing information</h1>"
                f"<p id='account'>{account['code']}</p></body></html>"
            )

        return app

    def _list(self, invoices: list[dict[str, Any]], path: str) -> Any:
        args = request.args
        unknown = set(args) - LIST_PARAMS
        if unknown:
            return self._error(400, "bad_request", f"Unknown parameter(s): {', '.join(sorted(unknown))}")
        try:
            limit = int(args.get("limit", "20"))
            cursor = int(args.get("cursor", "0"))
        except ValueError:
            return self._error(400, "bad_request", "limit and cursor must be integers")
        if not 1 <= limit <= 200:
            return self._error(400, "validation", "limit must be between 1 and 200", params=[{"param": "limit"}])
        order, sort = args.get("order", "desc"), args.get("sort", "created_at")
        if order not in ("asc", "desc") or sort not in ("created_at", "updated_at"):
            return self._error(400, "bad_request", "order must be asc or desc; sort created_at or updated_at")
        state = args.get("state")
        if state is not None and state not in STATE_FILTERS:
            return self._error(400, "validation", f"state must be one of {', '.join(STATE_FILTERS)}")
        selected = [inv for inv in invoices if state is None or inv["state"] == state]
        # Stable: equal timestamps keep insertion order, so the cursor never skips or repeats one.
        ordered = sorted(enumerate(selected), key=lambda pair: (pair[1][sort], pair[0]), reverse=order == "desc")
        selected = [inv for _, inv in ordered]
        page = selected[cursor : cursor + limit]
        has_more = cursor + limit < len(selected)
        next_link = None
        if has_more:
            query = {key: value for key, value in args.items() if key != "cursor"}
            query["cursor"] = str(cursor + limit)
            next_link = f"{path}?{urlencode(sorted(query.items()))}"
        return jsonify({"object": "list", "has_more": has_more, "next": next_link, "data": page})

    def _collect(self, invoice_id: str) -> Any:
        invoice = self._find_invoice(invoice_id)
        if invoice is None:
            return self._not_found("invoice", invoice_id)
        if invoice["state"] not in ("pending", "past_due", "processing") or invoice["collection_method"] != "automatic":
            with self._lock:
                self.collections.append({"invoice_id": invoice["id"], "outcome": "refused"})
            return self._error(422, "validation", "Invoice is not collectible (it is closed or manual).")
        works = self.card_works.get(invoice["account"]["id"], True)
        transaction = self._transaction(invoice, success=works)
        invoice["transactions"].append(transaction)
        with self._lock:
            self.collections.append({"invoice_id": invoice["id"], "outcome": "paid" if works else "declined"})
        if not works:
            return self._error(
                422,
                "transaction",
                "Your card was declined due to insufficient funds.",
                transaction_error={
                    "object": "transaction_error",
                    "transaction_id": transaction["id"],
                    "category": "soft",
                    "code": "insufficient_funds",
                    "decline_code": "insufficient_funds",
                    "message": "The transaction was declined due to insufficient funds.",
                    "merchant_advice": "The customer should use a different card.",
                },
            )
        invoice.update(state="paid", paid=invoice["total"], balance=0, closed_at=_iso(time.time()))
        invoice["updated_at"] = _iso(time.time())
        return jsonify(invoice)
