"""Sending one due notification: re-check the invoice, mint a portal session, message, record.

Nothing here runs inside a handler's transaction. The database is touched in short transactions
around the external calls, and every external call that creates something carries an idempotency
key, so a worker killed between "sent" and "recorded" re-sends with the same key and the provider
answers "already sent" instead of emailing the customer twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from webhook_app import dunning, links
from webhook_app.adapters import InvoiceLine, Message
from webhook_app.claims import Claim, finish
from webhook_app.errors import ConfigurationNeeded, CustomerMissing, PermanentError
from webhook_app.invoices import InvoiceView
from webhook_app.models import DunningCase, Notification
from webhook_app.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a send ended: sent, skipped (with why) or a failure the caller classifies."""

    status: str
    reason: str | None = None


def idempotency_key(notification_id: int) -> str:
    """The key the email tool sees for this notification, identical on every attempt."""
    return f"webhook-app-notification-{notification_id}"


def _line(case: DunningCase, inv: InvoiceView | None) -> InvoiceLine:
    return InvoiceLine(
        invoice_id=case.invoice_id,
        number=(inv.number if inv else None) or case.invoice_number,
        amount_due=(inv.amount_remaining or inv.amount_due) if inv else case.amount_due,
        currency=case.currency,
        hosted_invoice_url=(inv.hosted_invoice_url if inv else None) or case.hosted_invoice_url,
        attempt_count=max(case.attempt_count, inv.attempt_count if inv else 0),
        next_payment_attempt=inv.next_payment_attempt if inv else case.next_payment_attempt,
    )


def send_notification(svc: Services, claim: Claim) -> Outcome:
    """Deliver the claimed notification; raises classified errors for the worker to record."""
    now = svc.clock.now()
    with svc.db.session() as s:
        notification = s.get(Notification, claim.id)
        case = s.get(DunningCase, notification.case_id)
        s.expunge_all()
    context = {"notification_id": notification.id, "case_id": case.id, "invoice_id": case.invoice_id}

    if not case.is_open:
        return _skip(svc, claim, f"case {case.status}", context)
    if case.status == "paused":
        return _skip(svc, claim, "paused: the customer updated the payment method; waiting for Stripe's retry",
                     context)
    if svc.billing is None:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set; messages wait until it is")

    invoice = svc.billing.retrieve_invoice(case.invoice_id)
    if invoice.is_closed:
        # The webhook that says so may still be on its way (or lost): settle the case from the source.
        with svc.db.session() as s:
            if invoice.is_paid:
                dunning.record_payment(s, invoice, paid_at=invoice.paid_at or now, now=now)
            else:
                dunning.close_case(s, invoice.id, dunning.CLOSED_AS[invoice.status], f"invoice {invoice.status}", now)
        return _skip(svc, claim, f"invoice already {invoice.status}", context)

    email = invoice.customer_email or case.customer_email
    if not email:
        raise PermanentError("the invoice has no customer email to send to")

    if notification.kind == "action_required":
        # 3-D Secure: the customer authenticates the payment itself on Stripe's hosted invoice page.
        portal_id, portal_url = None, None
        update_url = invoice.hosted_invoice_url or case.hosted_invoice_url
        if not update_url:
            raise PermanentError("action required but the invoice has no hosted_invoice_url")
    else:
        use_links = bool(svc.settings.public_url)
        # One key per notification: a retried send reuses the session (and its URL) Stripe already made,
        # so the message is identical and the email tool can recognise the retry.
        portal = svc.billing.create_portal_session(
            case.customer_id, idempotency_key=f"{idempotency_key(notification.id)}-portal",
            after_expiration_login=not use_links)
        portal_id, portal_url = portal.id, portal.url
        update_url = links.recovery_url(svc.settings, case.id, notification.id, notification.created_at) if use_links else portal.url

    message = Message(
        kind=notification.kind, email=email, customer_id=case.customer_id,
        customer_name=invoice.customer_name or case.customer_name, update_payment_url=update_url,
        portal_url=portal_url, invoice=_line(case, invoice), created_at=notification.created_at,
        step=notification.step,
    )
    result = svc.messenger.send(message, idempotency_key(notification.id))

    with svc.db.session() as s:
        recorded = finish(s, Notification, claim, status="sent", sent_at=now, provider=result.provider,
                          provider_message_id=result.message_id, portal_session_id=portal_id,
                          last_error="provider had already accepted this message" if result.duplicate else None)
        if recorded:
            live_case = s.scalars(select(DunningCase).where(DunningCase.id == case.id).with_for_update()).one()
            live_case.messages_sent += 1
            live_case.first_message_at = live_case.first_message_at or now
            live_case.updated_at = now
    log.info("recovery message sent%s", " (provider had it already)" if result.duplicate else "",
             extra={**context, "provider": result.provider})
    return Outcome("sent")


def _skip(svc: Services, claim: Claim, reason: str, context: dict) -> Outcome:
    with svc.db.session() as s:
        finish(s, Notification, claim, status="skipped", last_error=reason)
    log.info("notification skipped: %s", reason, extra=context)
    return Outcome("skipped", reason)


def mark_case_error(svc: Services, claim: Claim, exc: CustomerMissing) -> None:
    """Stripe no longer knows the customer or invoice: stop chasing this case for good."""
    now = svc.clock.now()
    with svc.db.session() as s:
        notification = s.get(Notification, claim.id)
        case = s.scalars(select(DunningCase).where(DunningCase.id == notification.case_id).with_for_update()).one()
        if case.is_open:
            case.status, case.close_reason, case.closed_at, case.updated_at = "error", str(exc), now, now
            dunning.cancel_pending(s, case, "case closed: " + str(exc))
