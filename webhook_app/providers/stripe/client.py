"""Stripe, through the official SDK's `StripeClient`, with explicit retries, timeouts and a rate limit.

`StripeClient` retries 0 times by default; we set `max_network_retries` (the SDK then sends an
idempotency key on POST retries itself) and a requests-based HTTP client with a timeout, and we pass
our own idempotency keys where a retry across worker attempts must not create a second object. Every
request goes through one `Pacer` whose limiter (25 requests/s in test mode, 100 live: Stripe's own
limits) is shared through the database by every process using the key (`webhook_app.rate_slots`),
which paces a little under it; a 429 holds every caller, in every process, for Stripe's Retry-After,
or for a couple of slots when it gives none (its usual 429: one request too many in one second).
- Invoices: https://docs.stripe.com/api/invoices/retrieve, /api/invoices/list
- Portal sessions (deep link with flow_data): https://docs.stripe.com/api/customer_portal/sessions/create
  and https://docs.stripe.com/customer-management/portal-deep-links
- Errors: https://docs.stripe.com/error-handling; rate limits: https://docs.stripe.com/rate-limits
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import stripe

from webhook_app.adapters.pacing import Pacer
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.config import StripeSettings
from webhook_app.declines import Decline
from webhook_app.domain import InvoiceView
from webhook_app.errors import (
    ConfigurationMissing,
    ConfigurationNeeded,
    CustomerMissing,
    InvoiceMissing,
    PermanentError,
    RateLimited,
    ResourceMissing,
    TransientError,
)
from webhook_app.observability import plain_text
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.stripe.declines import (
    decline_from_charge,
    decline_from_invoice_payments,
    decline_from_payment_intent,
    invoice_payments_params,
)
from webhook_app.providers.stripe.translate import BASIL, invoice_view

PAGE_SIZE = 100  # Stripe's maximum `limit` for list endpoints
# Stripe sends no Retry-After with most 429s; its meter is per second, so a second is enough. Under
# the shared, even pacing such a 429 is one request too many in one window and is held much less
# (`TokenBucket.throttle_hold`); a Retry-After Stripe does send is always honoured as given.
DEFAULT_RETRY_AFTER = 1.0
# Stripe allows 25 req/s in test mode and 100 live. The limiter is shared by every process on the
# database and paces at SHARED_PACE of this, so the limit itself is the setting.
RATE_TEST, RATE_LIVE = 25.0, 100.0


def make_client(settings: StripeSettings) -> stripe.StripeClient:
    """A StripeClient honouring STRIPE_API_BASE, retries and timeout from settings."""
    if not settings.secret_key:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set")
    return stripe.StripeClient(
        settings.secret_key,
        base_addresses={"api": settings.api_base},
        max_network_retries=settings.max_retries,
        http_client=stripe.RequestsClient(timeout=settings.timeout_seconds),
    )


def default_rate(settings: StripeSettings) -> float:
    """Requests per second for this key (every process together): the setting, else by the key's mode."""
    return settings.rate_per_second or (RATE_LIVE if settings.livemode else RATE_TEST)


_NO_SUCH = re.compile(r"No such ([a-z_ ]+?):")


def _missing(message: str, param: str | None) -> Exception:
    """What is missing, named from Stripe's "No such <kind>: '<id>'" text, else from `param`."""
    named = _NO_SUCH.search(message)
    kind = (named.group(1).strip().replace(" ", "_") if named else None) or (param if param != "id" else None)
    if kind == "customer":
        return CustomerMissing(f"Stripe resource_missing: {message}")
    if kind == "invoice":
        return InvoiceMissing(f"Stripe resource_missing: {message}")
    if kind == "configuration" or param == "configuration":
        # A Billing Portal configuration that does not exist (deleted, or the other mode's): a setting
        # to fix, not a reason to stop chasing the customer. Messages are held until it is fixed.
        return ConfigurationMissing(
            f"the Billing Portal configuration does not exist in this mode: run `webhook-app portal setup` "
            f"and set STRIPE_PORTAL_CONFIGURATION to the id it prints (Stripe said: {message})"
        )
    return ResourceMissing(f"Stripe resource_missing: {message}", kind=kind)


def translate_error(exc: stripe.StripeError) -> Exception:
    """Map an SDK error onto our classified errors; messages carry Stripe's text, never the key."""
    # An HTML error page (a proxy in front of STRIPE_API_BASE) is reduced to its title.
    message = plain_text(
        getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or exc.__class__.__name__)
    )
    code = getattr(exc, "code", None)
    status = getattr(exc, "http_status", None)
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        headers = getattr(exc, "headers", None) or {}
        wait = parse_retry_after(headers.get("Retry-After") if hasattr(headers, "get") else None)
        return RateLimited(
            f"Stripe rate limit (429): {message}",
            wait if wait is not None else DEFAULT_RETRY_AFTER,
            stated=wait is not None,
        )
    if isinstance(exc, (stripe.APIConnectionError,)) or (status is not None and status >= 500):
        return TransientError(f"Stripe unavailable ({status or 'connection'}): {message}")
    if isinstance(exc, stripe.AuthenticationError):
        return ConfigurationNeeded(f"Stripe rejected STRIPE_SECRET_KEY (401): {message}")
    if isinstance(exc, stripe.PermissionError):
        return ConfigurationNeeded(f"STRIPE_SECRET_KEY lacks a permission (403): {message}")
    if code == "resource_missing":
        return _missing(message, getattr(exc, "param", None))
    if "No configuration provided" in message or "default configuration has not been created" in message:
        return ConfigurationNeeded(
            f"Stripe Billing Portal is not configured: run `webhook-app portal setup` (Stripe said: {message})"
        )
    return PermanentError(f"Stripe rejected the request ({status} {code or ''}): {message}".replace("  ", " "))


class StripeApi:
    """The SDK client plus this process's rate limit: what both Stripe ports share."""

    def __init__(self, settings: StripeSettings, client: stripe.StripeClient | None = None, pacer: Pacer | None = None):
        self.settings = settings
        self.client = client or make_client(settings)
        self.pacer = pacer or Pacer("stripe", TokenBucket(default_rate(settings)))

    def call(self, fn: Callable[..., Any], *args: Any, retry_errors: bool = False) -> Any:
        """One API request under the rate limit, its failure classified."""

        def request() -> Any:
            try:
                return fn(*args)
            except stripe.StripeError as exc:
                raise translate_error(exc) from None

        return self.pacer(request, retry_errors=retry_errors)

    def pages(self, list_fn: Callable[..., Any], params: dict[str, Any]) -> Iterator[Any]:
        """Every object of a list endpoint, one page (100 objects) at a time.

        The SDK's `auto_paging_iter` does the same `starting_after`/`has_more` walk, but a 429 in the
        middle of it ends the iteration. Here each page request is paced and retried on its own, so a
        throttled or failed page is fetched again without listing everything again.
        """
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE}
            if cursor:
                page_params["starting_after"] = cursor
            page = self.call(list_fn, page_params, retry_errors=True)
            items = list(page.data)
            yield from items
            if not page.has_more or not items:
                return
            cursor = items[-1].id


class StripeBilling:
    """The runtime port (`webhook_app.providers.base.Billing`) over the Stripe API."""

    def __init__(self, api: StripeApi, *, return_url: str | None = None):
        self.api = api
        self.settings = api.settings
        self.return_url = return_url

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """Re-read an invoice: the events may be stale or out of order."""
        return invoice_view(self.api.call(self.api.client.v1.invoices.retrieve, invoice_id).to_dict())

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink:
        """A fresh Billing Portal session deep-linked to updating the payment method."""
        flow: dict[str, Any] = {"type": "payment_method_update"}
        if self.return_url:
            flow["after_completion"] = {"type": "redirect", "redirect": {"return_url": self.return_url}}
        params: dict[str, Any] = {"customer": target.customer_id, "flow_data": flow}
        if self.return_url:
            params["return_url"] = self.return_url
        if self.settings.portal_configuration:
            params["configuration"] = self.settings.portal_configuration
        if for_email:
            # An emailed raw session URL may be clicked after it expired: fall back to Stripe's login.
            params["after_expiration"] = {"type": "customer_login"}
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        session = self.api.call(self.api.client.v1.billing_portal.sessions.create, params, options)
        return UpdateLink(url=session.url, reference=session.id)

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """Every open invoice Stripe collects automatically (all pages), optionally of one customer."""
        params: dict[str, Any] = {"status": "open", "collection_method": "charge_automatically"}
        if customer_id:
            params["customer"] = customer_id
        for invoice in self.api.pages(self.api.client.v1.invoices.list, params):
            yield invoice_view(invoice.to_dict())

    def latest_decline(self, invoice: Mapping[str, Any], api_version: str | None) -> Decline | None:
        """Why the invoice's latest payment attempt failed, read from the API.

        API 2025-03-31.basil and later: the invoice's payments with their PaymentIntents expanded
        (`GET /v1/invoice_payments`); older payloads name a `payment_intent` or `charge` by id.
        https://docs.stripe.com/api/invoice-payment/list, /api/payment_intents/object#last_payment_error
        """
        payment_intent, charge = invoice.get("payment_intent"), invoice.get("charge")
        if isinstance(payment_intent, str):
            intent = self.api.call(self.api.client.v1.payment_intents.retrieve, payment_intent)
            return decline_from_payment_intent(intent.to_dict())
        if isinstance(charge, str):
            return decline_from_charge(self.api.call(self.api.client.v1.charges.retrieve, charge).to_dict())
        invoice_id = invoice.get("id")
        if not isinstance(invoice_id, str) or (api_version is not None and api_version < BASIL and not payment_intent):
            return None  # an old-version invoice that never had a payment attempt to read
        payments = self.api.call(self.api.client.v1.invoice_payments.list, invoice_payments_params(invoice_id))
        return decline_from_invoice_payments(payments.to_dict())
