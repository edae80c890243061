"""One plain function per Stripe event type: `HANDLERS = {type: fn}`.

A handler gets the event (a dict), an open database session and its context, and changes only the
database: messages go to the outbox, sent later by the worker. The worker commits the handler's
changes together with the event's `done` mark, so a replayed or re-claimed event has no second effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from webhook_app import dunning
from webhook_app.clock import from_unix
from webhook_app.config import Settings
from webhook_app.finance import corrections
from webhook_app.invoices import InvoiceView, stripe_id
from webhook_app.models import DunningCase


@dataclass(frozen=True)
class Context:
    """What a handler may use besides the session."""

    settings: Settings
    now: datetime
    cadence: dunning.Cadence = dunning.DEFAULT_CADENCE


Handler = Callable[[Session, dict, Context], None]


def _invoice(event: dict) -> InvoiceView:
    return InvoiceView.from_stripe(event["data"]["object"])


def _created(event: dict) -> datetime:
    return from_unix(event["created"])


def invoice_payment_failed(session: Session, event: dict, ctx: Context) -> None:
    """Open or update the invoice's dunning case; schedule its messages once per episode."""
    dunning.record_failure(session, _invoice(event), failed_at=_created(event), now=ctx.now, cadence=ctx.cadence)


def invoice_payment_action_required(session: Session, event: dict, ctx: Context) -> None:
    """The bank wants 3-D Secure: the customer must authenticate on the hosted invoice page."""
    dunning.record_failure(
        session, _invoice(event), failed_at=_created(event), now=ctx.now, kind="action_required", cadence=ctx.cadence
    )


def invoice_paid(session: Session, event: dict, ctx: Context) -> None:
    """Close the case as recovered and append to the ledger (also for invoice.payment_succeeded)."""
    inv = _invoice(event)
    dunning.record_payment(session, inv, paid_at=inv.paid_at or _created(event), now=ctx.now)


def invoice_voided(session: Session, event: dict, ctx: Context) -> None:
    """A voided invoice will never be paid: close the case and cancel its messages."""
    dunning.close_case(session, _invoice(event).id, "void", "invoice voided", ctx.now)


def invoice_marked_uncollectible(session: Session, event: dict, ctx: Context) -> None:
    """Written off: close the case as lost (a later payment still counts as a recovery)."""
    dunning.close_case(session, _invoice(event).id, "uncollectible", "invoice marked uncollectible", ctx.now)


def customer_subscription_deleted(session: Session, event: dict, ctx: Context) -> None:
    """The subscription ended: stop chasing its invoices."""
    sub_id = stripe_id(event["data"]["object"].get("id"), "subscription.id")
    invoice_ids = session.scalars(
        select(DunningCase.invoice_id).where(
            DunningCase.subscription_id == sub_id, DunningCase.status.in_(DunningCase.OPEN_STATUSES)
        )
    ).all()
    for invoice_id in invoice_ids:
        dunning.close_case(session, invoice_id, "canceled", "subscription canceled", ctx.now)


def customer_updated(session: Session, event: dict, ctx: Context) -> None:
    """A new default payment method: pause the customer's sequences until Stripe retries."""
    customer = event["data"]["object"]
    previous = event["data"].get("previous_attributes") or {}
    changed = (
        isinstance(previous.get("invoice_settings"), dict) and "default_payment_method" in previous["invoice_settings"]
    )
    new_method = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if changed and new_method:
        dunning.pause_customer(session, stripe_id(customer.get("id"), "customer.id"), ctx.now)


def payment_method_attached(session: Session, event: dict, ctx: Context) -> None:
    """The customer added a payment method: pause their sequences until Stripe retries."""
    customer = event["data"]["object"].get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    if customer_id is not None:  # a payment method attached to no customer concerns no case
        dunning.pause_customer(session, stripe_id(customer_id, "payment_method.customer"), ctx.now)


HANDLERS: dict[str, Handler] = {
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_payment_action_required,
    "invoice.paid": invoice_paid,
    "invoice.payment_succeeded": invoice_paid,
    "invoice.voided": invoice_voided,
    "invoice.marked_uncollectible": invoice_marked_uncollectible,
    "customer.subscription.deleted": customer_subscription_deleted,
    "customer.updated": customer_updated,
    "payment_method.attached": payment_method_attached,
    # Money given back on a recovered invoice: offsetting ledger rows (see finance/corrections.py).
    "charge.refunded": corrections.charge_refunded,
    "credit_note.created": corrections.credit_note_created,
    "credit_note.voided": corrections.credit_note_voided,
}
