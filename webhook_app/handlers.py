"""One plain function per domain event: `HANDLERS = {event class: fn}`.

A handler gets an open database session, the domain event (from a provider's translator) and its
context, and changes only the database: messages go to the outbox, sent later by the worker. The
worker commits the handlers' changes together with the inbox event's `done` mark, so a replayed or
re-claimed event has no second effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from webhook_app import dunning, ledger, privacy
from webhook_app.config import Settings
from webhook_app.domain import (
    CorrectionVoided,
    CustomerDeleted,
    DomainEvent,
    InvoiceClosed,
    InvoicePaid,
    MoneyReturned,
    PaymentActionRequired,
    PaymentFailed,
    PaymentMethodUpdated,
    SubscriptionEnded,
)
from webhook_app.states import NotificationKind


@dataclass(frozen=True)
class Context:
    """What a handler may use besides the session: which provider the event came from, settings, now."""

    provider: str
    settings: Settings
    now: datetime
    cadence: dunning.Cadence = dunning.DEFAULT_CADENCE
    event_row_id: int | None = None  # the inbox row being processed (messages it schedules name it)


def payment_failed(session: Session, event: PaymentFailed, ctx: Context) -> None:
    """Open or update the invoice's dunning case; schedule its messages once per episode."""
    dunning.record_failure(
        session,
        event.invoice,
        failed_at=event.failed_at,
        now=ctx.now,
        cadence=ctx.cadence,
        decline=event.decline,
        alerts=ctx.settings.alerts,
        source_event_id=ctx.event_row_id,
    )


def payment_action_required(session: Session, event: PaymentActionRequired, ctx: Context) -> None:
    """The bank wants 3-D Secure: the customer must authenticate on the hosted invoice page."""
    dunning.record_failure(
        session,
        event.invoice,
        failed_at=event.at,
        now=ctx.now,
        kind=NotificationKind.ACTION_REQUIRED,
        cadence=ctx.cadence,
        source_event_id=ctx.event_row_id,
    )


def invoice_paid(session: Session, event: InvoicePaid, ctx: Context) -> None:
    """Close the case as recovered and append to the ledger."""
    dunning.record_payment(session, event.invoice, paid_at=event.paid_at, now=ctx.now, alerts=ctx.settings.alerts)


def invoice_closed(session: Session, event: InvoiceClosed, ctx: Context) -> None:
    """Voided, written off or canceled: close the case and cancel its messages (a later payment still counts)."""
    dunning.close_case(session, ctx.provider, event.invoice_id, event.status, event.reason, ctx.now)


def subscription_ended(session: Session, event: SubscriptionEnded, ctx: Context) -> None:
    """The subscription ended: stop chasing its invoices."""
    dunning.close_subscription(session, ctx.provider, event.subscription_id, event.reason, ctx.now)


def payment_method_updated(session: Session, event: PaymentMethodUpdated, ctx: Context) -> None:
    """A new payment method: pause the customer's sequences until the provider retries."""
    dunning.pause_customer(session, ctx.provider, event.customer_id, ctx.now)


def money_returned(session: Session, event: MoneyReturned, ctx: Context) -> None:
    """Money given back on a recovered invoice: an offsetting ledger row."""
    ledger.money_returned(session, ctx.provider, event, ctx.now)


def correction_voided(session: Session, event: CorrectionVoided, ctx: Context) -> None:
    """A correction withdrawn (voided credit note): the row that reverses it."""
    ledger.correction_voided(session, ctx.provider, event, ctx.now)


def customer_deleted(session: Session, event: CustomerDeleted, ctx: Context) -> None:
    """The customer is gone: erase their names and emails now and stop messaging them."""
    privacy.erase_customer(session, ctx.provider, event.customer_id, ctx.now)


HANDLERS: dict[type, Callable[[Session, Any, Context], None]] = {
    PaymentFailed: payment_failed,
    PaymentActionRequired: payment_action_required,
    InvoicePaid: invoice_paid,
    InvoiceClosed: invoice_closed,
    SubscriptionEnded: subscription_ended,
    PaymentMethodUpdated: payment_method_updated,
    MoneyReturned: money_returned,
    CorrectionVoided: correction_voided,
    CustomerDeleted: customer_deleted,
}


def apply(session: Session, event: DomainEvent, ctx: Context) -> None:
    """Run the handler for `event` (every domain event has one)."""
    HANDLERS[type(event)](session, event, ctx)
