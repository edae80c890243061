"""The email tools behind one small protocol, with a real, a console and a test implementation.

`Messenger` delivers a recovery message (Loops, Intercom, console). Billing systems live in
`webhook_app.providers`. Adapters speak business terms and return plain values, never SDK objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from webhook_app.declines import Decline, DeclineClass, as_message_data, template_keys
from webhook_app.money import format_amount


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
    decline: Decline | None = None  # why the payment failed (webhook_app.declines)

    def template_keys(self) -> tuple[str, ...]:
        """Template names to try, most specific first: `first.insufficient_funds`, then `first`."""
        decline_class = self.decline.decline_class if self.decline else DeclineClass.UNKNOWN
        return template_keys(self.template, decline_class) or (self.template,)

    def data_variables(self) -> dict[str, Any]:
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
            **as_message_data(self.decline),
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

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        """Email a team alert to `email` (ALERT_EMAIL), once per idempotency key where the tool can."""
        ...

    def check(self) -> str:
        """Verify credentials; return a short description or raise an error."""
        ...
