"""Every external system behind a small protocol, with a real, a console and a test implementation.

`Messenger` delivers a recovery message (Loops, Intercom, console); `Billing` is the slice of Stripe
the app uses. Adapters speak business terms and return plain values (a URL, a dict), never SDK objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from webhook_app.invoices import InvoiceView, format_amount


@dataclass(frozen=True)
class InvoiceLine:
    """One unpaid invoice as a message mentions it."""

    invoice_id: str
    number: str | None
    amount_due: int
    currency: str
    hosted_invoice_url: str | None
    attempt_count: int
    next_payment_attempt: datetime | None

    @property
    def amount_display(self) -> str:
        return format_amount(self.amount_due, self.currency)


@dataclass(frozen=True)
class Message:
    """A recovery message to one customer; adapters map it onto their provider's fields."""

    kind: str  # payment_failed | action_required
    email: str
    customer_id: str
    customer_name: str | None
    update_payment_url: str
    portal_url: str | None
    invoice: InvoiceLine
    created_at: datetime
    step: int = 0
    is_final_notice: bool = False
    other_invoices: tuple[InvoiceLine, ...] = field(default=())
    template: str = "first"  # first | reminder | final | action_required (see dunning.template_for)

    def data_variables(self) -> dict:
        """The camelCase message data of the design's contract (Loops dataVariables / eventProperties)."""
        inv = self.invoice
        data = {
            "updatePaymentUrl": self.update_payment_url,
            "portalUrl": self.portal_url or "",
            "hostedInvoiceUrl": inv.hosted_invoice_url or "",
            "amountDue": inv.amount_display,
            "currency": inv.currency.upper(),
            "invoiceId": inv.invoice_id,
            "invoiceNumber": inv.number or "",
            "customerName": self.customer_name or "",
            "attemptCount": inv.attempt_count,
            "nextPaymentAttempt": inv.next_payment_attempt.strftime("%Y-%m-%dT%H:%M:%SZ")
            if inv.next_payment_attempt
            else "",
            "messageKind": self.template,
            "step": self.step,
            "isFinalNotice": self.is_final_notice,
        }
        if self.other_invoices:
            data["invoiceCount"] = 1 + len(self.other_invoices)
            data["invoices"] = [
                {
                    "invoiceId": line.invoice_id,
                    "invoiceNumber": line.number or "",
                    "amountDue": line.amount_display,
                    "hostedInvoiceUrl": line.hosted_invoice_url or "",
                }
                for line in (inv, *self.other_invoices)
            ]
        return data


@dataclass(frozen=True)
class SendResult:
    """What a provider said: its message id if any, and whether it had already accepted this key."""

    provider: str
    message_id: str | None = None
    duplicate: bool = False


class Messenger(Protocol):
    """Delivers one recovery message, at most once per idempotency key."""

    name: str

    def send(self, message: Message, idempotency_key: str) -> SendResult: ...

    def check(self) -> str:
        """Verify credentials; return a short description or raise an error."""
        ...


@dataclass(frozen=True)
class PortalSession:
    """A freshly minted Stripe Billing Portal session."""

    id: str
    url: str


class Billing(Protocol):
    """The slice of Stripe this app uses."""

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView: ...

    def create_portal_session(
        self, customer_id: str, *, idempotency_key: str | None = None, after_expiration_login: bool = False
    ) -> PortalSession: ...

    # Operator commands (webhook_app/ops). `call`, when given, wraps each page request (pacing, retries).

    def list_open_invoices(
        self, *, customer: str | None = None, call: Callable | None = None
    ) -> Iterator[InvoiceView]: ...

    def list_events(
        self,
        *,
        types: list[str],
        delivery_success: bool | None = None,
        created_gte: int | None = None,
        call: Callable | None = None,
    ) -> Iterator[tuple[dict, str]]: ...

    def account_livemode(self) -> bool: ...

    def list_portal_configurations(self, *, is_default: bool | None = None) -> Iterator[dict]: ...

    def retrieve_portal_configuration(self, configuration_id: str) -> dict: ...

    def create_portal_configuration(self, params: dict) -> dict: ...

    def update_portal_configuration(self, configuration_id: str, params: dict) -> dict: ...

    def list_webhook_endpoints(self) -> Iterator[dict]: ...

    def create_webhook_endpoint(self, params: dict) -> dict: ...

    def update_webhook_endpoint(self, endpoint_id: str, params: dict) -> dict: ...
