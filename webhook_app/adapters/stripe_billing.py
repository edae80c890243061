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

import stripe

from webhook_app.adapters import PortalSession
from webhook_app.config import Settings
from webhook_app.errors import ConfigurationNeeded, CustomerMissing, PermanentError, TransientError
from webhook_app.invoices import InvoiceView


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
            "Stripe Billing Portal is not configured: run `webhook-app portal setup` "
            f"(Stripe said: {message})")
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

    def create_portal_session(self, customer_id: str, *, idempotency_key: str | None = None,
                              after_expiration_login: bool = False) -> PortalSession:
        """A fresh Billing Portal session deep-linked to updating the payment method."""
        flow: dict = {"type": "payment_method_update"}
        if self.settings.portal_return_url:
            flow["after_completion"] = {"type": "redirect",
                                        "redirect": {"return_url": self.settings.portal_return_url}}
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
