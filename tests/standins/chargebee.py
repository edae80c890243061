"""A stand-in for the Chargebee API v2: customers, invoices, subscriptions, events and hosted pages.

Shapes follow github.com/chargebee/openapi (spec/chargebee_api_v2_pc_v2_spec.json) and the Python SDK
models generated from it: `{"invoice": {...}}` for a retrieve, `{"list": [{"invoice": {...}}],
"next_offset": "..."}` for a list, errors `{message, type, api_error_code, param?, error_code,
error_msg, http_status_code}`. The API lives under `/api/v2` with HTTP basic auth (the API key as
username, empty password); hosted pages are served at `/pages/v3/<id>/` like Chargebee's, so an
end-to-end test can follow a redirect there. `Faults` apply to API calls only.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from tests.standins import Faults

API = "/api/v2"
INVOICE_STATUSES = ("paid", "posted", "payment_due", "not_paid", "voided", "pending")
DUNNING_STATUSES = ("in_progress", "exhausted", "stopped", "success")
HOSTED_PAGE_TTL = 5 * 24 * 3600  # hosted pages created through the API expire; the stand-in uses 5 days
# List-invoice filters the stand-in understands (operators as the docs name them); anything else is a 400,
# so a client that misspells a filter fails here instead of silently listing every invoice.
_INVOICE_FILTERS = {
    "status": ("is", "is_not", "in", "not_in"),
    "customer_id": ("is", "is_not", "in", "not_in"),
    "subscription_id": ("is", "is_not", "in", "not_in"),
    "dunning_status": ("is", "is_not", "in", "not_in"),
}
_SORTABLE = ("date", "updated_at")


class ChargebeeStandIn:
    """State and recorded requests; `app` is the Flask app to serve (see `tests.standins.serve`)."""

    def __init__(
        self, api_key: str = "test_cbKey0123456789abcdef", site: str = "acme-test", faults: Faults | None = None
    ) -> None:
        self.api_key = api_key
        self.site = site
        self.faults = faults or Faults()
        self.customers: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.hosted_pages: list[dict[str, Any]] = []  # {"type", "form", "hosted_page", "minted_at"} per page minted
        self.idempotent_replays = 0  # hosted-page POSTs answered from an earlier one with the same key
        self._idempotency: dict[str, dict[str, Any]] = {}  # chargebee-idempotency-key -> hosted_page
        self.page_visits: list[str] = []  # hosted page ids opened in a browser
        self.requests: list[tuple[str, str]] = []
        self.retry_after: str | None = "1"  # Retry-After sent with an injected 429 (None: no header)
        self.base_url = ""  # where hosted page URLs point; empty: the address the request came to
        self.url = ""  # set by a test once served
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    # -- seeding ---------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    def add_customer(
        self,
        customer_id: str | None = None,
        *,
        email: str = "ada@example.com",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        company: str | None = None,
        preferred_currency_code: str = "USD",
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return a Customer resource."""
        now = int(time.time())
        customer = {
            "id": customer_id or self._next_id("cust_"),
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "company": company,
            "auto_collection": "on",
            "net_term_days": 0,
            "allow_direct_debit": False,
            "created_at": now,
            "taxability": "taxable",
            "updated_at": now,
            "pii_cleared": "active",
            "channel": "web",
            "resource_version": now * 1000,
            "deleted": False,
            "object": "customer",
            "card_status": "valid",
            "preferred_currency_code": preferred_currency_code,
            "billing_address": {
                "first_name": first_name,
                "last_name": last_name,
                "country": "US",
                "validation_status": "not_validated",
                "object": "billing_address",
            },
            "promotional_credits": 0,
            "refundable_credits": 0,
            "excess_payments": 0,
            "unbilled_charges": 0,
            **extra,
        }
        self.customers[customer["id"]] = customer
        return customer

    def add_subscription(
        self,
        subscription_id: str | None = None,
        *,
        customer_id: str,
        status: str = "active",
        currency_code: str = "USD",
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return a Subscription resource for an existing customer."""
        now = int(time.time())
        subscription = {
            "id": subscription_id or self._next_id("sub_"),
            "customer_id": customer_id,
            "status": status,
            "currency_code": currency_code,
            "billing_period": 1,
            "billing_period_unit": "month",
            "current_term_start": now - 86400,
            "current_term_end": now + 29 * 86400,
            "next_billing_at": now + 29 * 86400,
            "created_at": now - 86400 * 60,
            "started_at": now - 86400 * 60,
            "activated_at": now - 86400 * 60,
            "updated_at": now,
            "has_scheduled_changes": False,
            "channel": "web",
            "resource_version": now * 1000,
            "deleted": False,
            "object": "subscription",
            "due_invoices_count": 0,
            "mrr": 0,
            "subscription_items": [],
            **extra,
        }
        self.subscriptions[subscription["id"]] = subscription
        return subscription

    def add_invoice(
        self,
        invoice_id: str | None = None,
        *,
        customer_id: str,
        subscription_id: str | None = None,
        status: str = "payment_due",
        amount_due: int = 4900,
        total: int | None = None,
        currency_code: str = "USD",
        dunning_status: str | None = "in_progress",
        next_retry_at: int | None = None,
        dunning_attempts: int | list[dict[str, Any]] = 1,
        date: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return an Invoice resource; amounts are integers in minor units, as Chargebee's.

        `dunning_attempts` is a count (that many failed automatic attempts are generated) or the list.
        """
        if status not in INVOICE_STATUSES:
            raise ValueError(f"status must be one of {INVOICE_STATUSES}")
        if dunning_status is not None and dunning_status not in DUNNING_STATUSES:
            raise ValueError(f"dunning_status must be one of {DUNNING_STATUSES}")
        now = int(time.time())
        total = amount_due if total is None else total
        invoice_id = invoice_id or self._next_id("inv_")
        if isinstance(dunning_attempts, int):
            attempts = [
                {
                    "attempt": n,
                    "transaction_id": f"txn_{invoice_id}_{n}",
                    "dunning_type": "auto_collect",
                    "created_at": now - (dunning_attempts - n) * 86400,
                    "txn_status": "failure",
                    "txn_amount": amount_due,
                }
                for n in range(dunning_attempts)
            ]
        else:
            attempts = list(dunning_attempts)
        if next_retry_at is None and status == "payment_due" and dunning_status == "in_progress":
            next_retry_at = now + 3 * 86400
        invoice = {
            "id": invoice_id,
            "customer_id": customer_id,
            "subscription_id": subscription_id,
            "recurring": subscription_id is not None,
            "status": status,
            "price_type": "tax_exclusive",
            "date": date if date is not None else now - 86400,
            "due_date": date if date is not None else now - 86400,
            "net_term_days": 0,
            "exchange_rate": 1.0,
            "currency_code": currency_code,
            "total": total,
            "amount_paid": total - amount_due,
            "amount_adjusted": 0,
            "write_off_amount": 0,
            "credits_applied": 0,
            "amount_due": amount_due,
            "dunning_status": dunning_status,
            "next_retry_at": next_retry_at,
            "updated_at": now,
            "resource_version": now * 1000,
            "deleted": False,
            "object": "invoice",
            "first_invoice": False,
            "amount_to_collect": amount_due,
            "round_off_amount": 0,
            "has_advance_charges": False,
            "term_finalized": True,
            "is_gifted": False,
            "tax": 0,
            "sub_total": total,
            "line_items": [],
            "linked_payments": [],
            "dunning_attempts": attempts,
            "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "object": "billing_address"},
            **extra,
        }
        self.invoices[invoice_id] = invoice
        return invoice

    def add_event(
        self,
        event_type: str,
        content: dict[str, Any],
        *,
        event_id: str | None = None,
        occurred_at: int | None = None,
        source: str = "scheduled_job",
    ) -> dict[str, Any]:
        """Store and return an Event resource (the same object Chargebee POSTs to a webhook)."""
        event: dict[str, Any] = {
            "id": event_id or self._next_id("ev_"),
            "occurred_at": occurred_at if occurred_at is not None else int(time.time()),
            "source": source,
            "object": "event",
            "api_version": "v2",
            "content": content,
            "event_type": event_type,
            "webhook_status": "scheduled",
        }
        self.events[event["id"]] = event
        return event

    def add_invoice_event(self, event_type: str, invoice_id: str, **kwargs: Any) -> dict[str, Any]:
        """An event about an invoice (`payment_failed`, `payment_succeeded`, `invoice_updated`, ...).

        Its content carries the invoice, its customer and (if any) its subscription as they are now,
        as Chargebee's payment events do: copies, so later changes (another failed attempt) do not
        reach back into an event already recorded.
        """
        invoice = self.invoices[invoice_id]
        content: dict[str, Any] = {"invoice": copy.deepcopy(invoice)}
        customer = self.customers.get(invoice["customer_id"])
        if customer:
            content["customer"] = copy.deepcopy(customer)
        subscription = self.subscriptions.get(invoice.get("subscription_id") or "")
        if subscription:
            content["subscription"] = copy.deepcopy(subscription)
        return self.add_event(event_type, content, **kwargs)

    def add_payment_source_event(
        self, event_type: str, customer_id: str, *, status: str = "valid", **kwargs: Any
    ) -> dict[str, Any]:
        """`payment_source_added` / `payment_source_updated`: content `customer` and `payment_source`."""
        now = int(time.time())
        source = {
            "id": self._next_id("pm_"),
            "customer_id": customer_id,
            "type": "card",
            "status": status,
            "gateway": "chargebee",
            "reference_id": "tok_standin",
            "created_at": now,
            "updated_at": now,
            "deleted": False,
            "object": "payment_source",
        }
        self.customers[customer_id]["primary_payment_source_id"] = source["id"]
        content = {"customer": copy.deepcopy(self.customers[customer_id]), "payment_source": source}
        return self.add_event(event_type, content, **kwargs)

    def cancel_subscription(self, subscription_id: str, cancel_reason: str | None = "not_paid") -> dict[str, Any]:
        """The subscription is cancelled (`not_paid`: dunning ran out) and its `subscription_cancelled` event."""
        subscription = self.subscriptions[subscription_id]
        now = int(time.time())
        subscription.update(status="cancelled", cancelled_at=now, updated_at=now)
        if cancel_reason:
            subscription["cancel_reason"] = cancel_reason
        content: dict[str, Any] = {"subscription": copy.deepcopy(subscription)}
        customer = self.customers.get(subscription["customer_id"])
        if customer:
            content["customer"] = copy.deepcopy(customer)
        return self.add_event("subscription_cancelled", content)

    @staticmethod
    def webhook_body(event: dict[str, Any]) -> bytes:
        """The JSON body Chargebee POSTs to a webhook endpoint for `event`."""
        return json.dumps(event, separators=(",", ":")).encode()

    # -- state changes -------------------------------------------------------------------------------

    def _touch(self, invoice: dict[str, Any]) -> None:
        now = int(time.time())
        invoice["updated_at"] = now
        invoice["resource_version"] = max(invoice["resource_version"] + 1, now * 1000)

    def fail_attempt(self, invoice_id: str, next_retry_at: int | None = None) -> dict[str, Any]:
        """One more failed automatic retry: a dunning attempt is recorded and the next retry scheduled."""
        invoice = self.invoices[invoice_id]
        now = int(time.time())
        attempts = invoice["dunning_attempts"]
        attempts.append(
            {
                "attempt": len(attempts),
                "transaction_id": f"txn_{invoice_id}_{len(attempts)}",
                "dunning_type": "auto_collect",
                "created_at": now,
                "txn_status": "failure",
                "txn_amount": invoice["amount_due"],
            }
        )
        invoice.update(
            status="payment_due",
            dunning_status="in_progress",
            next_retry_at=next_retry_at if next_retry_at is not None else now + 3 * 86400,
        )
        self._touch(invoice)
        return invoice

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice is paid in full (a retry succeeded or the customer paid on a hosted page)."""
        invoice = self.invoices[invoice_id]
        now = int(time.time())
        invoice.update(
            status="paid",
            amount_paid=invoice["total"],
            amount_due=0,
            amount_to_collect=0,
            paid_at=now,
            next_retry_at=None,
            dunning_status="success" if invoice.get("dunning_status") else None,
        )
        invoice["linked_payments"].append(
            {
                "txn_id": f"txn_{invoice_id}_paid",
                "applied_amount": invoice["total"],
                "applied_at": now,
                "txn_status": "success",
                "txn_date": now,
                "txn_amount": invoice["total"],
            }
        )
        self._touch(invoice)
        return invoice

    def exhaust_dunning(self, invoice_id: str) -> dict[str, Any]:
        """Every retry failed: the invoice stays unpaid as `not_paid`, dunning exhausted."""
        invoice = self.invoices[invoice_id]
        invoice.update(status="not_paid", dunning_status="exhausted", next_retry_at=None)
        self._touch(invoice)
        return invoice

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The merchant voided the invoice."""
        invoice = self.invoices[invoice_id]
        invoice.update(status="voided", voided_at=int(time.time()), next_retry_at=None, amount_due=0)
        if invoice.get("dunning_status") == "in_progress":
            invoice["dunning_status"] = "stopped"
        self._touch(invoice)
        return invoice

    def write_off_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The merchant wrote the invoice off: Chargebee marks it paid with `write_off_amount` set."""
        invoice = self.invoices[invoice_id]
        invoice.update(
            status="paid",
            write_off_amount=invoice["amount_due"],
            amount_due=0,
            amount_to_collect=0,
            next_retry_at=None,
        )
        if invoice.get("dunning_status") == "in_progress":
            invoice["dunning_status"] = "stopped"
        self._touch(invoice)
        return invoice

    def expire_hosted_page(self, hosted_page_id: str) -> None:
        """The hosted page has expired (its URL no longer works)."""
        for record in self.hosted_pages:
            if record["hosted_page"]["id"] == hosted_page_id:
                record["hosted_page"]["expires_at"] = int(time.time()) - 1

    # -- HTTP ----------------------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        api_error_code: str,
        message: str,
        type_: str | None = None,
        param: str | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Response, int, dict[str, str]]:
        body: dict[str, Any] = {
            "message": message,
            "api_error_code": api_error_code,
            "error_code": error_code or api_error_code,
            "error_msg": message,
            "http_status_code": status,
        }
        if type_:
            body["type"] = type_
        if param:
            body["param"] = param
            body["error_param"] = param
        return jsonify(body), status, headers or {}

    def _not_found(self, kind: str, object_id: str) -> tuple[Response, int, dict[str, str]]:
        return self._error(
            404,
            "resource_not_found",
            f"Sorry, we couldn't find that resource ({kind} {object_id})",
            type_="invalid_request",
            error_code="referenced_resource_not_found",
        )

    def _authorized(self) -> bool:
        auth = request.authorization
        return auth is not None and auth.type == "basic" and auth.username == self.api_key

    def _build(self) -> Flask:
        app = Flask("chargebee-standin")

        @app.before_request
        def _gate() -> Any:
            with self._lock:
                self.requests.append((request.method, request.full_path.rstrip("?")))
            if not request.path.startswith(API + "/"):
                return None
            if not self._authorized():
                return self._error(
                    401,
                    "api_authentication_failed",
                    "Sorry, authentication failed. Invalid api key",
                    type_="untyped",
                    error_code="api_authentication_invalid_key",
                )
            status = self.faults.verdict()
            if status == 429:
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return self._error(
                    429,
                    "api_request_limit_exceeded",
                    "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits.",
                    type_="operation_failed",
                    headers=headers,
                )
            if status:
                return self._error(
                    500,
                    "internal_error",
                    "Sorry, Something went wrong when trying to process the request.",
                    type_="operation_failed",
                )
            return None

        @app.errorhandler(HTTPException)
        def _http_error(exc: HTTPException) -> Any:
            if request.path.startswith(API + "/"):
                return self._error(exc.code or 500, "invalid_request", exc.description or "invalid request")
            return exc

        @app.get(f"{API}/events/<event_id>")
        def retrieve_event(event_id: str) -> Any:
            event = self.events.get(event_id)
            return jsonify({"event": event}) if event else self._not_found("event", event_id)

        @app.get(f"{API}/invoices/<invoice_id>")
        def retrieve_invoice(invoice_id: str) -> Any:
            invoice = self.invoices.get(invoice_id)
            return jsonify({"invoice": invoice}) if invoice else self._not_found("invoice", invoice_id)

        @app.get(f"{API}/customers/<customer_id>")
        def retrieve_customer(customer_id: str) -> Any:
            customer = self.customers.get(customer_id)
            return jsonify({"customer": customer}) if customer else self._not_found("customer", customer_id)

        @app.get(f"{API}/subscriptions/<subscription_id>")
        def retrieve_subscription(subscription_id: str) -> Any:
            subscription = self.subscriptions.get(subscription_id)
            if not subscription:
                return self._not_found("subscription", subscription_id)
            return jsonify({"subscription": subscription, "customer": self.customers.get(subscription["customer_id"])})

        @app.get(f"{API}/invoices")
        def list_invoices() -> Any:
            return self._list_invoices()

        @app.get(f"{API}/configurations")
        def configurations() -> Any:
            return jsonify(
                {
                    "configurations": [
                        {
                            "domain": self.site,
                            "product_catalog_version": "v2",
                            "chargebee_response_schema_type": "items",
                            "object": "configuration",
                        }
                    ]
                }
            )

        @app.post(f"{API}/hosted_pages/collect_now")
        def collect_now() -> Any:
            return self._mint_hosted_page("collect_now")

        @app.post(f"{API}/hosted_pages/manage_payment_sources")
        def manage_payment_sources() -> Any:
            return self._mint_hosted_page("manage_payment_sources")

        @app.get("/pages/v3/<hosted_page_id>/")
        def hosted_page(hosted_page_id: str) -> Any:
            record = next((r for r in self.hosted_pages if r["hosted_page"]["id"] == hosted_page_id), None)
            if record is None:
                return "<html><body><h1>Page not found</h1></body></html>", 404
            page = record["hosted_page"]
            if page["expires_at"] < time.time():
                return "<html><body><h1>This link has expired</h1></body></html>", 410
            with self._lock:
                self.page_visits.append(hosted_page_id)
                if page["state"] == "created":
                    page["state"] = "requested"
            title = "Pay now" if page["type"] == "collect_now" else "Manage payment methods"
            return (
                f"<html><head><title>{title}</title></head><body>"
                f"<h1>Chargebee {title}</h1><p id='hosted-page'>{hosted_page_id}</p>"
                f"<p id='customer'>{record['form'].get('customer[id]', '')}</p></body></html>"
            )

        return app

    def _list_invoices(self) -> Any:
        args = request.args
        try:
            limit = int(args.get("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return self._error(400, "invalid_request", "limit should be between 1 and 100", "invalid_request", "limit")
        offset_arg = args.get("offset")
        start = 0
        if offset_arg:
            try:
                start = int(json.loads(offset_arg)[0])
            except (ValueError, TypeError, IndexError, KeyError):
                return self._error(400, "invalid_request", "offset is invalid", "invalid_request", "offset")
        selected = list(self.invoices.values())
        for key, value in args.items(multi=True):
            if key in ("limit", "offset"):
                continue
            if key.startswith("sort_by["):
                order = key[len("sort_by[") : -1]
                if order not in ("asc", "desc") or value not in _SORTABLE:
                    return self._error(400, "invalid_request", f"{key} is invalid", "invalid_request", key)
                selected.sort(key=_sort_key(value), reverse=order == "desc")
                continue
            field, _, rest = key.partition("[")
            operator = rest[:-1] if rest.endswith("]") else ""
            if field not in _INVOICE_FILTERS or operator not in _INVOICE_FILTERS[field]:
                return self._error(400, "invalid_request", f"{key} is not a supported filter", "invalid_request", key)
            values = _filter_values(value) if operator in ("in", "not_in") else [value]
            if values is None:
                return self._error(400, "invalid_request", f"{key} must be a list", "invalid_request", key)
            wanted = operator in ("is", "in")
            selected = [inv for inv in selected if (str(inv.get(field)) in values) == wanted]
        page = selected[start : start + limit]
        body: dict[str, Any] = {"list": [{"invoice": inv} for inv in page]}
        if start + limit < len(selected):
            # Opaque to clients, like Chargebee's (a JSON array of strings there too).
            body["next_offset"] = json.dumps([str(start + limit), "standin"])
        return jsonify(body)

    def _mint_hosted_page(self, page_type: str) -> Any:
        form = request.form.to_dict()
        customer_id = form.get("customer[id]", "")
        if not customer_id:
            return self._error(
                400, "invalid_request", "customer[id] : cannot be blank", "invalid_request", "customer[id]"
            )
        if customer_id not in self.customers:
            return self._not_found("customer", customer_id)
        key = request.headers.get("chargebee-idempotency-key")
        with self._lock:
            earlier = self._idempotency.get(f"{page_type}:{key}") if key else None
            if earlier is not None:
                # Chargebee answers a repeated key with the first response and this header.
                self.idempotent_replays += 1
                return jsonify({"hosted_page": earlier}), 200, {"chargebee-idempotency-replayed": "true"}
        now = int(time.time())
        page_id = self._next_id("hp_")
        base = self.base_url or request.host_url.rstrip("/")
        page = {
            "id": page_id,
            "type": page_type,
            "url": f"{base}/pages/v3/{page_id}/",
            "state": "created",
            "embed": False,
            "created_at": now,
            "expires_at": now + HOSTED_PAGE_TTL,
            "updated_at": now,
            "resource_version": now * 1000,
            "object": "hosted_page",
        }
        with self._lock:
            record = {"type": page_type, "form": form, "hosted_page": page, "minted_at": time.time(), "key": key}
            self.hosted_pages.append(record)
            if key:
                self._idempotency[f"{page_type}:{key}"] = page
        return jsonify({"hosted_page": page})


def _sort_key(field: str) -> Callable[[dict[str, Any]], int]:
    def key(invoice: dict[str, Any]) -> int:
        return int(invoice.get(field) or 0)

    return key


def _filter_values(value: str) -> list[str] | None:
    """An `in` / `not_in` value: a JSON array (what the SDKs send) or `[a,b]` without quotes."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return [part.strip().strip("'\"") for part in text[1:-1].split(",") if part.strip()]
    if not isinstance(parsed, list):
        return None
    return [str(item) for item in parsed]
