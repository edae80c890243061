"""Sending one due notification: re-check the invoice, mint a portal session, message, record.

Nothing here runs inside a handler's transaction. The database is touched in short transactions
around the external calls, and every external call that creates something carries an idempotency
key, so a worker killed between "sent" and "recorded" re-sends with the same key and the provider
answers "already sent" instead of emailing the customer twice.

A customer with several failed invoices due at once gets one message listing all of them: the other
invoices' notifications are claimed with the same token and recorded as sent together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from webhook_app import dunning, links
from webhook_app.adapters import InvoiceLine, Message
from webhook_app.claims import Claim, finish
from webhook_app.errors import ConfigurationNeeded, CustomerMissing, PermanentError
from webhook_app.invoices import InvoiceView
from webhook_app.models import DunningCase, Notification
from webhook_app.quiet_hours import quiet_until
from webhook_app.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a send ended: sent, skipped or deferred (with why)."""

    status: str
    reason: str | None = None


@dataclass
class _Item:
    """One invoice going into the message: its notification, case and fresh Stripe view."""

    notification: Notification
    case: DunningCase
    invoice: InvoiceView | None = None


def idempotency_key(notification_id: int) -> str:
    """The key the email tool sees for this notification, identical on every attempt."""
    return f"webhook-app-notification-{notification_id}"


def _line(item: _Item) -> InvoiceLine:
    case, inv = item.case, item.invoice
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
    primary = _Item(notification, case)
    context = {"notification_id": notification.id, "case_id": case.id, "invoice_id": case.invoice_id}

    if not case.is_open:
        return _skip(svc, claim, f"case {case.status}", context)
    if case.status == "paused":
        return _skip(svc, claim, "paused: the customer updated the payment method; waiting for Stripe's retry", context)
    if svc.billing is None:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set; messages wait until it is")

    primary.invoice = svc.billing.retrieve_invoice(case.invoice_id)
    if primary.invoice.is_closed:
        _settle(svc, primary.invoice, now)
        return _skip(svc, claim, f"invoice already {primary.invoice.status}", context)

    if svc.settings.quiet_hours:
        resume = quiet_until(now, primary.invoice.customer_country, svc.settings.quiet_hours)
        if resume:
            return _defer(svc, claim, resume, context)

    email = primary.invoice.customer_email or case.customer_email
    if not email:
        raise PermanentError("the invoice has no customer email to send to")

    others = _claim_siblings(svc, primary, claim, now)
    try:
        others = [item for item in others if _still_due(svc, item, claim, now)]
        result, portal_id = _deliver(svc, primary, others, email, claim)
    except BaseException:
        _release(svc, claim, [item.notification.id for item in others])
        raise

    with svc.db.session() as s:
        recorded = finish(
            s,
            Notification,
            claim,
            status="sent",
            sent_at=now,
            provider=result.provider,
            provider_message_id=result.message_id,
            portal_session_id=portal_id,
            last_error="provider had already accepted this message" if result.duplicate else None,
        )
        if recorded:
            for item in others:
                finish(
                    s,
                    Notification,
                    Claim(item.notification.id, claim.token, 0),
                    status="sent",
                    sent_at=now,
                    provider=result.provider,
                    provider_message_id=result.message_id,
                    portal_session_id=portal_id,
                    last_error=f"sent in one message with notification {notification.id}",
                )
            _count_message(s, [primary.case.id] + [item.case.id for item in others], now)
    log.info(
        "recovery message sent%s%s",
        " (provider had it already)" if result.duplicate else "",
        f" covering {1 + len(others)} invoices" if others else "",
        extra={**context, "provider": result.provider},
    )
    return Outcome("sent")


def _deliver(svc: Services, primary: _Item, others: list[_Item], email: str, claim: Claim):
    """Mint the link and send the message; returns (SendResult, portal session id)."""
    notification, case, invoice = primary.notification, primary.case, primary.invoice
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
            case.customer_id,
            idempotency_key=f"{idempotency_key(notification.id)}-portal",
            after_expiration_login=not use_links,
        )
        portal_id, portal_url = portal.id, portal.url
        update_url = (
            links.recovery_url(svc.settings, case.id, notification.id, notification.created_at)
            if use_links
            else portal.url
        )
    template = dunning.template_for(notification.kind, notification.step)
    message = Message(
        kind=notification.kind,
        email=email,
        customer_id=case.customer_id,
        customer_name=invoice.customer_name or case.customer_name,
        update_payment_url=update_url,
        portal_url=portal_url,
        invoice=_line(primary),
        created_at=notification.created_at,
        step=notification.step,
        is_final_notice=template == "final",
        template=template,
        other_invoices=tuple(_line(item) for item in others),
    )
    return svc.messenger.send(message, idempotency_key(notification.id)), portal_id


def _claim_siblings(svc: Services, primary: _Item, claim: Claim, now: datetime) -> list[_Item]:
    """Take the customer's other due notifications of the same kind under this claim's token."""
    with svc.db.session() as s:
        candidates = (
            select(Notification.id)
            .join(DunningCase, DunningCase.id == Notification.case_id)
            .where(
                DunningCase.customer_id == primary.case.customer_id,
                DunningCase.id != primary.case.id,
                DunningCase.status == "open",
                Notification.kind == primary.notification.kind,
                Notification.status == "pending",
                Notification.run_at <= now,
            )
            .with_for_update(of=Notification, skip_locked=True)
            .cte("siblings")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        ids = [
            row.id
            for row in s.execute(
                update(Notification)
                .where(Notification.id.in_(select(candidates.c.id)), Notification.status == "pending")
                .values(
                    status="sending",
                    claim_token=claim.token,
                    locked_until=now + timedelta(seconds=svc.settings.worker_lease_seconds),
                )
                .returning(Notification.id),
                execution_options={"synchronize_session": False},
            )
        ]
        items = []
        for notification_id in sorted(ids):
            notification = s.get(Notification, notification_id)
            items.append(_Item(notification, s.get(DunningCase, notification.case_id)))
        s.expunge_all()
    return items


def _still_due(svc: Services, item: _Item, claim: Claim, now: datetime) -> bool:
    """Re-read a sibling's invoice; settle and skip it when it is no longer collectable."""
    item.invoice = svc.billing.retrieve_invoice(item.case.invoice_id)
    if not item.invoice.is_closed:
        return True
    _settle(svc, item.invoice, now)
    with svc.db.session() as s:
        finish(
            s,
            Notification,
            Claim(item.notification.id, claim.token, 0),
            status="skipped",
            last_error=f"invoice already {item.invoice.status}",
        )
    return False


def _release(svc: Services, claim: Claim, notification_ids: list[int]) -> None:
    """Give the siblings back to the queue when the shared message could not be sent."""
    if not notification_ids:
        return
    with svc.db.session() as s:
        s.execute(
            update(Notification)
            .where(Notification.id.in_(notification_ids), Notification.claim_token == claim.token)
            .values(status="pending", claim_token=None, locked_until=None)
        )


def _count_message(session, case_ids: list[int], now: datetime) -> None:
    for case in session.scalars(select(DunningCase).where(DunningCase.id.in_(case_ids)).with_for_update()):
        case.messages_sent += 1
        case.first_message_at = case.first_message_at or now
        case.updated_at = now


def _settle(svc: Services, invoice: InvoiceView, now: datetime) -> None:
    """The webhook that says so may still be on its way (or lost): settle the case from the source."""
    with svc.db.session() as s:
        if invoice.is_paid:
            dunning.record_payment(s, invoice, paid_at=invoice.paid_at or now, now=now)
        else:
            dunning.close_case(s, invoice.id, dunning.CLOSED_AS[invoice.status], f"invoice {invoice.status}", now)


def _skip(svc: Services, claim: Claim, reason: str, context: dict) -> Outcome:
    with svc.db.session() as s:
        finish(s, Notification, claim, status="skipped", last_error=reason)
    log.info("notification skipped: %s", reason, extra=context)
    return Outcome("skipped", reason)


def _defer(svc: Services, claim: Claim, resume: datetime, context: dict) -> Outcome:
    with svc.db.session() as s:
        finish(
            s,
            Notification,
            claim,
            status="pending",
            run_at=resume,
            last_error=f"quiet hours: held until {resume.isoformat()}Z",
        )
    log.info("notification held for the customer's quiet hours", extra=context)
    return Outcome("deferred", "quiet hours")


def mark_case_error(svc: Services, claim: Claim, exc: CustomerMissing) -> None:
    """Stripe no longer knows the customer or invoice: stop chasing this case for good."""
    now = svc.clock.now()
    with svc.db.session() as s:
        notification = s.get(Notification, claim.id)
        case = s.scalars(select(DunningCase).where(DunningCase.id == notification.case_id).with_for_update()).one()
        if case.is_open:
            case.status, case.close_reason, case.closed_at, case.updated_at = "error", str(exc), now, now
            dunning.cancel_pending(s, case, "case closed: " + str(exc))
