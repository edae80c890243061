"""Sending one due notification: re-check the invoice, mint the update link, message, record.

Nothing here runs inside a handler's transaction. The database is touched in short transactions
around the external calls, and every external call that creates something carries an idempotency
key, so a worker killed between "sent" and "recorded" re-sends with the same key and the provider
answers "already sent" instead of emailing the customer twice.

A customer with several failed invoices due at once gets one message listing all of them: the other
invoices' notifications are claimed with the same token (`webhook_app.outbox`) and recorded as sent
together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from webhook_app import alert_outbox, dunning, tokens
from webhook_app.adapters import InvoiceLine, Message, SendResult
from webhook_app.alerts import AlertKind
from webhook_app.claims import Claim, finish
from webhook_app.declines import Decline, DeclineClass
from webhook_app.domain import InvoiceView
from webhook_app.errors import ConfigurationNeeded, PermanentError, ResourceMissing, TransientError
from webhook_app.models import DunningCase, Notification
from webhook_app.outbox import Batch
from webhook_app.providers.base import LinkTarget
from webhook_app.quiet_hours import quiet_until
from webhook_app.services import Services
from webhook_app.states import CaseStatus, NotificationKind, NotificationStatus

log = logging.getLogger(__name__)

THROTTLE_RETRIES = 5  # 429s absorbed in place per message before the worker's backoff takes over
MAX_INLINE_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """How a send ended: sent, skipped or deferred (with why)."""

    status: str
    reason: str | None = None
    notification_ids: tuple[int, ...] = ()  # the notifications a sent message covered


@dataclass
class _Item:
    """One invoice going into the message: its notification, case and fresh Stripe view."""

    notification: Notification
    case: DunningCase
    invoice: InvoiceView | None = None


def idempotency_key(deployment_id: str, notification_id: int) -> str:
    """The key the email tool (and the billing system, for the update page) sees for this notification.

    Identical on every attempt, and unique per deployment: notification ids restart at 1 in every
    database, and two deployments may share one Loops team (which refuses a key for 24 hours).
    """
    return f"webhook-app-{deployment_id}-notification-{notification_id}"


def _line(item: _Item) -> InvoiceLine:
    case, inv = item.case, item.invoice
    return InvoiceLine(
        invoice_id=case.invoice_id,
        number=(inv.number if inv else None) or case.invoice_number,
        amount_due=inv.remaining if inv else case.amount_due,
        currency=case.currency,
        hosted_invoice_url=(inv.hosted_invoice_url if inv else None) or case.hosted_invoice_url,
        attempt_count=max(case.attempt_count, inv.attempt_count if inv else 0),
        next_payment_attempt=inv.next_payment_attempt if inv else case.next_payment_attempt,
    )


def _other_invoices(primary: _Item, others: list[_Item]) -> tuple[InvoiceLine, ...]:
    """The other invoices the message lists: each once, never the primary's own (a final notice due
    with the first message of the same invoice is sent with it, not listed twice)."""
    seen = {primary.case.id}
    lines = []
    for item in others:
        if item.case.id not in seen:
            seen.add(item.case.id)
            lines.append(_line(item))
    return tuple(lines)


def link_target(case: DunningCase, notification_id: int | None = None) -> LinkTarget:
    """What an update link for `case` is for."""
    return LinkTarget(
        case_id=case.id,
        customer_id=case.customer_id,
        invoice_id=case.invoice_id,
        subscription_id=case.subscription_id,
        currency=case.currency,
        notification_id=notification_id,
    )


def send_notification(svc: Services, batch: Batch) -> Outcome:
    """Deliver the claimed message; raises classified errors for the worker to record."""
    claim = batch.claim
    now = svc.clock.now()
    if batch.notification is not None and batch.case is not None:
        primary = _Item(batch.notification, batch.case)
    else:  # not read by the claim: read them now, as the siblings are
        [primary] = _load(svc, (claim.id,))
    notification, case = primary.notification, primary.case
    context = {"notification_id": notification.id, "case_id": case.id, "invoice_id": case.invoice_id}

    try:
        return _send(svc, batch, primary, context, now)
    except ConfigurationNeeded as exc:
        # Nothing of this customer's can go out until an operator acts: the others wait with it.
        until = now + timedelta(seconds=exc.hold_seconds)
        _unclaim(svc, claim, batch.sibling_ids, status=NotificationStatus.HELD, run_at=until, last_error=str(exc))
        raise
    except BaseException:
        _release(svc, claim, batch.sibling_ids)
        raise


def _send(svc: Services, batch: Batch, primary: _Item, context: dict[str, Any], now: datetime) -> Outcome:
    claim, notification, case = batch.claim, primary.notification, primary.case
    if not case.is_open:
        outcome = _skip(svc, claim, f"case {case.status}", context)
        _release(svc, claim, batch.sibling_ids)
        return outcome
    if case.status == CaseStatus.PAUSED:
        outcome = _skip(svc, claim, "paused: the customer updated the payment method; waiting for the retry", context)
        _release(svc, claim, batch.sibling_ids)
        return outcome
    billing = svc.billing(case.provider)

    primary.invoice = billing.retrieve_invoice(case.invoice_id)
    if primary.invoice.is_closed:
        _settle(svc, primary.invoice, now)
        outcome = _skip(svc, claim, f"invoice already {primary.invoice.status}", context)
        _release(svc, claim, batch.sibling_ids)  # each goes out on its own, re-checked
        return outcome

    quiet_hours = svc.settings.dunning.quiet_hours
    if quiet_hours:
        country = primary.invoice.customer_country or case.customer_country
        resume = quiet_until(now, country, quiet_hours)
        if resume:
            # The siblings wait for the same morning (they go out together then).
            note = f"quiet hours: held until {resume.isoformat()}Z"
            _unclaim(svc, claim, batch.sibling_ids, status=NotificationStatus.PENDING, run_at=resume, last_error=note)
            return _defer(svc, claim, resume, context)

    email = primary.invoice.customer_email or case.customer_email
    if not email:
        raise PermanentError("the invoice has no customer email to send to")

    others = [item for item in _load(svc, batch.sibling_ids) if _still_due(svc, item, claim, now)]
    result, link_id = _deliver(svc, primary, others, email)

    sent = dict(
        status=NotificationStatus.SENT,
        sent_at=now,
        messenger=result.provider,
        messenger_message_id=result.message_id,
        update_link_id=link_id,
    )
    with svc.db.session() as s:
        duplicate_note = "the email tool had already accepted this message" if result.duplicate else None
        if finish(s, Notification, claim, **sent, last_error=duplicate_note):
            for item in others:
                note = f"sent in one message with notification {notification.id}"
                finish(s, Notification, Claim(item.notification.id, claim.token, 0), **sent, last_error=note)
            _count_message(s, [primary.case.id] + [item.case.id for item in others], now)
            for item in (primary, *others):
                if item.notification.step == dunning.FINAL_STEP:
                    alert_outbox.queue(s, svc.settings.alerts, AlertKind.FINAL_NOTICE, item.case, now)
    log.info(
        "recovery message sent%s%s",
        " (the email tool had it already)" if result.duplicate else "",
        f" covering {1 + len(others)} invoices" if others else "",
        extra={**context, "provider": case.provider},
    )
    return Outcome("sent", notification_ids=(notification.id, *(item.notification.id for item in others)))


def _deliver(svc: Services, primary: _Item, others: list[_Item], email: str) -> tuple[SendResult, str | None]:
    """Mint the link and send the message; returns (SendResult, the update link's provider id)."""
    notification, case, invoice = primary.notification, primary.case, primary.invoice
    assert invoice is not None  # read by send_notification before delivering
    link_id, portal_url = None, None
    if notification.kind == NotificationKind.ACTION_REQUIRED:
        # 3-D Secure: the customer authenticates the payment itself on the provider's hosted invoice page.
        update_url = invoice.hosted_invoice_url or case.hosted_invoice_url
        if not update_url:
            raise PermanentError("action required but the invoice has no hosted_invoice_url")
    else:
        use_links = bool(svc.settings.links.public_url)
        # One key per notification: a retried send reuses the page (and its URL) the provider already
        # made, so the message is identical and the email tool can recognise the retry.
        link = svc.billing(case.provider).update_link(
            link_target(case, notification.id),
            idempotency_key=f"{idempotency_key(svc.deployment_id(), notification.id)}-portal",
            for_email=True,
        )
        if link is not None:
            link_id, portal_url = link.reference, link.url
        if use_links:
            update_url = tokens.recovery_url(svc.settings.links, case.id, notification.id, notification.created_at)
        elif link is not None:
            update_url = link.url
        else:
            raise ConfigurationNeeded(f"PUBLIC_URL is not set: {case.provider} payment updates need our /r/ links")
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
        other_invoices=_other_invoices(primary, others),
        decline=case_decline(case),
    )
    return _send_message(svc, message, idempotency_key(svc.deployment_id(), notification.id)), link_id


def _send_message(svc: Services, message: Message, key: str) -> SendResult:
    """Send, waiting out the email tool's short rate-limit pauses here rather than in the outbox.

    On a 429 the adapter pauses its own token bucket for the provider's Retry-After; sending again
    waits there. A long wait, or a limit still hit after a few tries, goes back to the worker's backoff.
    """
    for attempt in range(THROTTLE_RETRIES + 1):
        try:
            return svc.messenger.send(message, key)
        except TransientError as exc:
            if exc.retry_after is None or exc.retry_after > MAX_INLINE_WAIT_SECONDS or attempt == THROTTLE_RETRIES:
                raise
            log.info("email tool rate limit: sending again after %.2fs", exc.retry_after)
    raise AssertionError("unreachable")


def _load(svc: Services, notification_ids: tuple[int, ...]) -> list[_Item]:
    """The claimed siblings with their cases, detached from the session."""
    if not notification_ids:
        return []  # most messages have no siblings: no transaction for nothing
    items = []
    with svc.db.session() as s:
        for notification_id in notification_ids:
            notification = s.get(Notification, notification_id)
            assert notification is not None
            case = s.get(DunningCase, notification.case_id)
            assert case is not None
            items.append(_Item(notification, case))
        s.expunge_all()
    return items


def _still_due(svc: Services, item: _Item, claim: Claim, now: datetime) -> bool:
    """Re-read a sibling's invoice; settle and skip it when it is no longer collectable."""
    item.invoice = svc.billing(item.case.provider).retrieve_invoice(item.case.invoice_id)
    if not item.invoice.is_closed:
        return True
    _settle(svc, item.invoice, now)
    with svc.db.session() as s:
        finish(
            s,
            Notification,
            Claim(item.notification.id, claim.token, 0),
            status=NotificationStatus.SKIPPED,
            last_error=f"invoice already {item.invoice.status}",
        )
    return False


def _unclaim(svc: Services, claim: Claim, notification_ids: tuple[int, ...], **values: Any) -> None:
    """Hand siblings this claim still holds back to the outbox with `values` (status, run_at, reason).

    Used when the shared message is not sent: they go back to the queue (released), wait for the same
    morning (quiet hours), or wait for an operator (held).
    """
    if not notification_ids:
        return
    with svc.db.session() as s:
        s.execute(
            update(Notification)
            .where(Notification.id.in_(notification_ids), Notification.claim_token == claim.token)
            .values(claim_token=None, locked_until=None, **values)
        )


def _release(svc: Services, claim: Claim, notification_ids: tuple[int, ...]) -> None:
    """Give the siblings back to the queue: each goes out on its own, re-checked."""
    _unclaim(svc, claim, notification_ids, status=NotificationStatus.PENDING)


def _count_message(session: Session, case_ids: list[int], now: datetime) -> None:
    for case in session.scalars(select(DunningCase).where(DunningCase.id.in_(case_ids)).with_for_update()):
        case.messages_sent += 1
        case.first_message_at = case.first_message_at or now
        case.updated_at = now


def _settle(svc: Services, invoice: InvoiceView, now: datetime) -> None:
    """The webhook that says so may still be on its way (or lost): settle the case from the source."""
    with svc.db.session() as s:
        dunning.settle(s, invoice, now, alerts=svc.settings.alerts)


def case_decline(case: DunningCase) -> Decline | None:
    """Why the case's latest payment failed, as its messages tell it (None when unknown)."""
    if not case.decline_class:
        return None
    return Decline(DeclineClass(case.decline_class), decline_code=case.decline_code, advice_code=case.advice_code)


def _skip(svc: Services, claim: Claim, reason: str, context: dict[str, Any]) -> Outcome:
    with svc.db.session() as s:
        finish(s, Notification, claim, status=NotificationStatus.SKIPPED, last_error=reason)
    log.info("notification skipped: %s", reason, extra=context)
    return Outcome("skipped", reason)


def _defer(svc: Services, claim: Claim, resume: datetime, context: dict[str, Any]) -> Outcome:
    with svc.db.session() as s:
        finish(
            s,
            Notification,
            claim,
            status=NotificationStatus.PENDING,
            run_at=resume,
            last_error=f"quiet hours: held until {resume.isoformat()}Z",
        )
    log.info("notification held for the customer's quiet hours", extra=context)
    return Outcome("deferred", "quiet hours")


def mark_case_error(svc: Services, claim: Claim, exc: ResourceMissing) -> None:
    """The provider no longer knows the customer or invoice: stop chasing this case for good."""
    now = svc.clock.now()
    with svc.db.session() as s:
        notification = s.get(Notification, claim.id)
        assert notification is not None
        case = s.scalars(select(DunningCase).where(DunningCase.id == notification.case_id).with_for_update()).one()
        if case.is_open:
            case.status, case.close_reason, case.closed_at, case.updated_at = CaseStatus.ERROR, str(exc), now, now
            dunning.cancel_pending(s, case, "case closed: " + str(exc))
