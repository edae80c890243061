"""What the core understands: a provider-neutral invoice, and the few domain events translators emit.

Each billing provider's translator (`webhook_app/providers/<name>/translate.py`) turns its own payloads
into these. Handlers, dunning, sending and finance work only on them, so a new billing system is a
translator and a client, never a change to the recovery flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from webhook_app.declines import Decline
from webhook_app.money import format_amount
from webhook_app.states import CaseStatus, LedgerKind

# Invoice statuses as the core knows them; translators map their provider's states onto these.
OPEN, PAID, VOID, UNCOLLECTIBLE, DRAFT = "open", "paid", "void", "uncollectible", "draft"
CANCELED = "canceled"  # its subscription ended with it unpaid (Braintree: a Canceled or Expired subscription)
CLOSED_STATUSES = frozenset({PAID, VOID, UNCOLLECTIBLE, CANCELED})


@dataclass(frozen=True)
class InvoiceView:
    """An invoice (Paddle: a transaction; Braintree: a subscription's past-due balance), provider-neutral.

    Amounts are integers in minor units of `currency` (lower-case ISO 4217).
    """

    provider: str
    id: str
    customer_id: str
    customer_email: str | None
    customer_name: str | None
    number: str | None
    currency: str
    amount_due: int
    amount_paid: int
    amount_remaining: int
    attempt_count: int
    next_payment_attempt: datetime | None
    hosted_invoice_url: str | None
    status: str | None  # open | paid | void | uncollectible | canceled | draft
    subscription_id: str | None = None
    livemode: bool = False
    auto_collected: bool = True  # the provider charges it by itself (what dunning is for)
    paid_out_of_band: bool = False
    paid_at: datetime | None = None
    failure_reason: str | None = None
    customer_country: str | None = None
    # The provider will not retry: True / False when it says so (Recurly's final dunning event; Paddle,
    # which never says when it retries, False); None to judge by `next_payment_attempt` (Stripe: none
    # scheduled means the last attempt has failed).
    last_attempt: bool | None = None

    @property
    def retries_over(self) -> bool:
        """No further automatic payment attempt will come (time for the final notice)."""
        if self.last_attempt is not None:
            return self.last_attempt
        return self.next_payment_attempt is None

    @property
    def is_paid(self) -> bool:
        return self.status == PAID

    @property
    def is_closed(self) -> bool:
        """Nothing left to collect: paid, voided, written off, or its subscription ended."""
        return self.status in CLOSED_STATUSES

    @property
    def remaining(self) -> int:
        """What the customer still owes (the amount due when the provider gives no remainder)."""
        return self.amount_remaining or self.amount_due

    @property
    def amount_display(self) -> str:
        return format_amount(self.amount_due, self.currency)


@dataclass(frozen=True)
class Settlement:
    """What a payment put in the account's balance, in the payout currency (Stripe: a balance transaction).

    `amount` (gross), `fee` and `net` are integers in minor units of `currency`; `exchange_rate` is the
    provider's rate from the invoice currency to `currency` (None when no conversion happened).
    """

    reference: str  # the provider's id for it, e.g. txn_...
    amount: int
    fee: int
    net: int
    currency: str
    exchange_rate: Decimal | None = None


# -- domain events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFailed:
    """A charge of the invoice failed (every retry fires one: dunning counts episodes, not events).

    `decline` says why, when the provider tells (webhook_app.declines); None when unknown.
    """

    invoice: InvoiceView
    failed_at: datetime
    decline: Decline | None = None


@dataclass(frozen=True)
class PaymentActionRequired:
    """The bank asks the customer to authenticate the payment (3-D Secure)."""

    invoice: InvoiceView
    at: datetime


@dataclass(frozen=True)
class InvoicePaid:
    """The invoice is paid: a recovery if it had failed."""

    invoice: InvoiceView
    paid_at: datetime


@dataclass(frozen=True)
class InvoiceClosed:
    """The invoice will not be paid: voided, written off, or its subscription canceled for non-payment."""

    invoice_id: str
    status: CaseStatus  # VOID | UNCOLLECTIBLE | CANCELED
    reason: str
    at: datetime


@dataclass(frozen=True)
class SubscriptionEnded:
    """The subscription ended: stop chasing every open invoice of it (closed as canceled)."""

    subscription_id: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class PaymentMethodUpdated:
    """The customer gave a new payment method: pause their sequences until the provider retries."""

    customer_id: str
    at: datetime


@dataclass(frozen=True)
class MoneyReturned:
    """Money given back on an invoice (refund, credit note): an offsetting ledger row.

    `amount` is positive. With `cumulative_prefix` set, `amount` is the running total given back by
    one source (a charge's `amount_refunded`) and only what the ledger has not yet recorded under that
    prefix counts; `key` then carries the total, so replays and reorderings add nothing twice.
    """

    invoice_id: str
    key: str
    kind: LedgerKind
    amount: int
    currency: str
    at: datetime
    cumulative_prefix: str | None = None


@dataclass(frozen=True)
class CorrectionVoided:
    """A correction no longer stands (a voided credit note): append the row that reverses `key`."""

    key: str
    reversal_key: str
    at: datetime


@dataclass(frozen=True)
class CustomerDeleted:
    """The billing system deleted the customer: erase their names and emails now, stop messaging them."""

    customer_id: str
    at: datetime


DomainEvent = (
    PaymentFailed
    | PaymentActionRequired
    | InvoicePaid
    | InvoiceClosed
    | SubscriptionEnded
    | PaymentMethodUpdated
    | MoneyReturned
    | CorrectionVoided
    | CustomerDeleted
)
