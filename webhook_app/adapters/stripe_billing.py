"""Stripe, through the official SDK's `StripeClient`, with explicit retries and timeouts.

`StripeClient` retries 0 times by default; we set `max_network_retries` (the SDK then sends an
idempotency key on POST retries itself) and a requests-based HTTP client with a timeout, and we pass
our own idempotency keys where a retry across worker attempts must not create a second object.
- Invoices: https://docs.stripe.com/api/invoices/retrieve
- Portal sessions (deep link with flow_data): https://docs.stripe.com/api/customer_portal/sessions/create
  and https://docs.stripe.com/customer-management/portal-deep-links
- Errors: https://docs.stripe.com/error-handling
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import stripe

from webhook_app.adapters import PortalSession
from webhook_app.config import Settings
from webhook_app.errors import ConfigurationNeeded, CustomerMissing, PermanentError, TransientError
from webhook_app.invoices import InvoiceView

PAGE_SIZE = 100  # Stripe's maximum `limit` for list endpoints
# A wrapper for one API request (`call(fn)` returns `fn()`), e.g. to pace it under a rate limit.
Call = Callable[[Callable[[], Any]], Any]


def make_client(settings: Settings) -> stripe.StripeClient:
    """A StripeClient honouring STRIPE_API_BASE, retries and timeout from settings."""
    if not settings.stripe_secret_key:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set")
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=settings.stripe_max_retries,
        http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
    )


def translate(exc: stripe.StripeError) -> Exception:
    """Map an SDK error onto our classified errors; messages carry Stripe's text, never the key."""
    message = getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or exc.__class__.__name__)
    code = getattr(exc, "code", None)
    status = getattr(exc, "http_status", None)
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return TransientError(f"Stripe rate limit (429): {message}", retry_after=2.0)
    if isinstance(exc, (stripe.APIConnectionError,)) or (status is not None and status >= 500):
        return TransientError(f"Stripe unavailable ({status or 'connection'}): {message}")
    if isinstance(exc, stripe.AuthenticationError):
        return ConfigurationNeeded(f"Stripe rejected STRIPE_SECRET_KEY (401): {message}")
    if isinstance(exc, stripe.PermissionError):
        return ConfigurationNeeded(f"STRIPE_SECRET_KEY lacks a permission (403): {message}")
    if code == "resource_missing":
        return CustomerMissing(f"Stripe resource_missing: {message}")
    if "No configuration provided" in message or "default configuration has not been created" in message:
        return ConfigurationNeeded(
            f"Stripe Billing Portal is not configured: run `webhook-app portal setup` (Stripe said: {message})"
        )
    return PermanentError(f"Stripe rejected the request ({status} {code or ''}): {message}".replace("  ", " "))


class StripeBilling:
    """The Billing protocol over the real Stripe API (or a stand-in at STRIPE_API_BASE)."""

    def __init__(self, settings: Settings, client: stripe.StripeClient | None = None):
        self.settings = settings
        self.client = client or make_client(settings)

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """Re-read an invoice: the events may be stale or out of order."""
        try:
            invoice = self.client.v1.invoices.retrieve(invoice_id)
        except stripe.StripeError as exc:
            raise translate(exc) from None
        return InvoiceView.from_stripe(invoice.to_dict())

    def create_portal_session(
        self, customer_id: str, *, idempotency_key: str | None = None, after_expiration_login: bool = False
    ) -> PortalSession:
        """A fresh Billing Portal session deep-linked to updating the payment method."""
        flow: dict = {"type": "payment_method_update"}
        if self.settings.portal_return_url:
            flow["after_completion"] = {"type": "redirect", "redirect": {"return_url": self.settings.portal_return_url}}
        params: dict = {"customer": customer_id, "flow_data": flow}
        if self.settings.portal_return_url:
            params["return_url"] = self.settings.portal_return_url
        if self.settings.stripe_portal_configuration:
            params["configuration"] = self.settings.stripe_portal_configuration
        if after_expiration_login:
            # An emailed raw session URL may be clicked after it expired: fall back to Stripe's login.
            params["after_expiration"] = {"type": "customer_login"}
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            session = self.client.v1.billing_portal.sessions.create(params, options)
        except stripe.StripeError as exc:
            raise translate(exc) from None
        return PortalSession(id=session.id, url=session.url)

    # -- operator commands: portal setup, stripe register-endpoint, doctor, campaign, events sync ----
    # https://docs.stripe.com/api/pagination, /api/invoices/list, /api/events/list,
    # /api/customer_portal/configurations, /api/webhook_endpoints, /api/balance/balance_retrieve

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except stripe.StripeError as exc:
            raise translate(exc) from None

    def _pages(self, list_fn: Callable[..., Any], params: dict, call: Call | None) -> Iterator[Any]:
        """Every object of a list endpoint, one page (100 objects) at a time.

        The SDK's `auto_paging_iter` does the same `starting_after`/`has_more` walk, but a 429 in the
        middle of it ends the iteration. Here each page request goes through `call`, so the caller can
        pace it under a rate limit and retry that one page without listing everything again.
        """
        call = call or (lambda fn: fn())
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE}
            if cursor:
                page_params["starting_after"] = cursor
            page = call(lambda params=page_params: self._call(list_fn, params))
            items = list(page.data)
            yield from items
            if not page.has_more or not items:
                return
            cursor = items[-1].id

    def list_open_invoices(self, *, customer: str | None = None, call: Call | None = None) -> Iterator[InvoiceView]:
        """Every open invoice Stripe collects automatically (all pages), optionally of one customer."""
        params: dict = {"status": "open", "collection_method": "charge_automatically"}
        if customer:
            params["customer"] = customer
        for invoice in self._pages(self.client.v1.invoices.list, params, call):
            yield InvoiceView.from_stripe(invoice.to_dict())

    def list_events(
        self,
        *,
        types: list[str],
        delivery_success: bool | None = None,
        created_gte: int | None = None,
        call: Call | None = None,
    ) -> Iterator[tuple[dict, str]]:
        """Events of `types` (at most 20) from the last 30 days, as (envelope, raw JSON) pairs.

        `delivery_success=False` returns events still pending or failed for some webhook endpoint.
        """
        params: dict = {"types": list(types)}
        if delivery_success is not None:
            params["delivery_success"] = delivery_success
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        for event in self._pages(self.client.v1.events.list, params, call):
            data = event.to_dict()
            yield data, json.dumps(data, default=str)

    def account_livemode(self) -> bool:
        """Check the key with `GET /v1/balance`; True when it is a live-mode key."""
        return bool(self._call(self.client.v1.balance.retrieve).livemode)

    def list_portal_configurations(self, *, is_default: bool | None = None) -> Iterator[dict]:
        """Billing Portal configurations of this mode (all pages), as dicts."""
        params: dict = {} if is_default is None else {"is_default": is_default}
        for configuration in self._pages(self.client.v1.billing_portal.configurations.list, params, None):
            yield configuration.to_dict()

    def retrieve_portal_configuration(self, configuration_id: str) -> dict:
        """One Billing Portal configuration (`resource_missing` becomes CustomerMissing)."""
        return self._call(self.client.v1.billing_portal.configurations.retrieve, configuration_id).to_dict()

    def create_portal_configuration(self, params: dict) -> dict:
        """Create a Billing Portal configuration; returns it as a dict."""
        return self._call(self.client.v1.billing_portal.configurations.create, params).to_dict()

    def update_portal_configuration(self, configuration_id: str, params: dict) -> dict:
        """Update a Billing Portal configuration; returns it as a dict."""
        return self._call(self.client.v1.billing_portal.configurations.update, configuration_id, params).to_dict()

    def list_webhook_endpoints(self) -> Iterator[dict]:
        """The account's webhook endpoints (all pages), as dicts; Stripe never lists their secrets."""
        for endpoint in self._pages(self.client.v1.webhook_endpoints.list, {}, None):
            yield endpoint.to_dict()

    def create_webhook_endpoint(self, params: dict) -> dict:
        """Create a webhook endpoint; the result carries `secret`, which Stripe returns only here."""
        return self._call(self.client.v1.webhook_endpoints.create, params).to_dict()

    def update_webhook_endpoint(self, endpoint_id: str, params: dict) -> dict:
        """Update a webhook endpoint's url, enabled events, status or metadata."""
        return self._call(self.client.v1.webhook_endpoints.update, endpoint_id, params).to_dict()
