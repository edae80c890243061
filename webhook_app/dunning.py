"""Dunning policy: one case per invoice, when to message, when to stop, and who gets the credit.

Billing systems report a failure on every retry (Stripe's Smart Retries: up to ~8 in two weeks), so
a case schedules its messages once per failure *episode* (unique on case/episode/step), never once per
event. An episode ends when the case closes, or pauses because the customer updated their payment
method; a failure after a pause starts the next episode. Cases are per provider and invoice; every
query here names the provider, since ids are only unique within one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from webhook_app import alert_outbox, ledger
from webhook_app.config import AlertSettings, DunningSettings
from webhook_app.declines import Decline, DeclineClass, first_message_at
from webhook_app.domain import InvoiceView
from webhook_app.models import Click, DunningCase, Notification
from webhook_app.sql import insert_all_if_absent, insert_if_absent
from webhook_app.states import (
    CASE_CLOSED_AS,
    NOTIFICATION_DUE,
    Attribution,
    CaseStatus,
    NotificationKind,
    NotificationStatus,
)

log = logging.getLogger(__name__)

FINAL_STEP = 99  # the last notice before the billing system gives up
ACTION_STEP = 100  # 3-D Secure: "authenticate this payment", a different message
FINAL_NOTICE_LEAD = timedelta(hours=24)


@dataclass(frozen=True)
class Cadence:
    """When an episode's messages go out, as offsets from its start, and the final notice.

    Reminders stop before the final notice; `retry_attempts` (the billing system's retry count, e.g.
    Stripe's Smart Retries setting) lets the final notice move to 24 h before the last retry once
    that retry is scheduled. `group_window`: the episode's first message waits this long, so a
    customer's invoices failing together (a renewal of several subscriptions) go out in one message;
    the outbox sends a customer's messages due within the window together (`webhook_app.outbox`).
    """

    days: tuple[float, ...] = (0.0, 3.0, 7.0)
    final_notice_days: float | None = 13.0
    retry_attempts: int | None = None
    group_window: timedelta = timedelta(0)

    @classmethod
    def from_settings(cls, settings: DunningSettings) -> Cadence:
        return cls(
            settings.cadence_days,
            settings.final_notice_days,
            settings.retry_attempts,
            timedelta(seconds=settings.group_window_seconds),
        )

    def steps(self) -> list[tuple[int, timedelta]]:
        """(step, offset) pairs: numbered reminders, then the final notice as FINAL_STEP."""
        final = self.final_notice_days
        steps = [(i, timedelta(days=d)) for i, d in enumerate(self.days) if final is None or d < final]
        if final is not None:
            steps.append((FINAL_STEP, timedelta(days=final)))
        return steps


def template_for(kind: str, step: int) -> str:
    """Which message of the sequence a notification is (config may map each to its own template)."""
    if kind == NotificationKind.ACTION_REQUIRED:
        return "action_required"
    if step == FINAL_STEP:
        return "final"
    return "first" if step == 0 else "reminder"


DEFAULT_CADENCE = Cadence()


def lock_case(session: Session, provider: str, invoice_id: str) -> DunningCase | None:
    """The invoice's case, locked for this transaction (PostgreSQL: FOR UPDATE), or None."""
    return session.scalars(
        select(DunningCase)
        .where(DunningCase.provider == provider, DunningCase.invoice_id == invoice_id)
        .with_for_update()
    ).one_or_none()


def _new_case_row(inv: InvoiceView, now: datetime, status: str, **first: Any) -> dict[str, Any]:
    return dict(
        provider=inv.provider,
        invoice_id=inv.id,
        customer_id=inv.customer_id,
        subscription_id=inv.subscription_id,
        customer_email=inv.customer_email,
        customer_name=inv.customer_name,
        customer_country=inv.customer_country,
        invoice_number=inv.number,
        hosted_invoice_url=inv.hosted_invoice_url,
        currency=inv.currency,
        amount_due=inv.amount_due,
        attempt_count=inv.attempt_count,
        failure_reason=inv.failure_reason,
        next_payment_attempt=inv.next_payment_attempt,
        livemode=inv.livemode,
        status=status,
        episode=1,
        messages_sent=0,
        created_at=now,
        updated_at=now,
        **first,
    )


def open_case(session: Session, inv: InvoiceView, now: datetime, status: str = CaseStatus.OPEN) -> DunningCase:
    """The invoice's case, created if missing (insert-or-nothing, then a locked read)."""
    return _open_case(session, inv, now, status)[0]


def _open_case(
    session: Session, inv: InvoiceView, now: datetime, status: str = CaseStatus.OPEN, **first: Any
) -> tuple[DunningCase, bool]:
    """(the invoice's case, whether this call created it); `first`: more columns for a new case only."""
    row = _new_case_row(inv, now, status, **first)
    created = insert_if_absent(session, DunningCase.__table__, row, ["provider", "invoice_id"])
    case = lock_case(session, inv.provider, inv.id)
    assert case is not None
    return case, created


def schedule(
    session: Session,
    case: DunningCase,
    steps: list[tuple[int, datetime]],
    kind: str,
    now: datetime,
    *,
    source_event_id: int | None = None,
) -> int:
    """Put messages for the case's current episode in the outbox; returns how many were new.

    `source_event_id`: the inbox row being processed, so `events list` can tell when its message failed.
    """
    rows = [
        dict(
            provider=case.provider,
            case_id=case.id,
            episode=case.episode,
            step=step,
            kind=kind,
            status=NotificationStatus.PENDING,
            run_at=run_at,
            attempts=0,
            created_at=now,
            source_event_id=source_event_id,
        )
        for step, run_at in steps
    ]
    return insert_all_if_absent(session, Notification.__table__, rows, ["case_id", "episode", "step"])


def schedule_episode(
    session: Session,
    case: DunningCase,
    start: datetime,
    now: datetime,
    kind: str = NotificationKind.PAYMENT_FAILED,
    cadence: Cadence = DEFAULT_CADENCE,
    first_at: datetime | None = None,
    source_event_id: int | None = None,
    new_case: bool = False,
) -> int:
    """Put the episode's messages in the outbox; returns how many were new (0 on a replay).

    `first_at` moves the first message (e.g. after the provider's next retry, for a technical decline).
    `new_case`: the case was created in this transaction, so it has no messages yet to look up.
    """
    if kind == NotificationKind.ACTION_REQUIRED:
        offsets = [(ACTION_STEP, timedelta(0))]  # one message: authenticate on the hosted invoice page
    else:
        offsets = cadence.steps()
        if not new_case and _final_notice_sent(session, case):
            offsets = [(step, offset) for step, offset in offsets if step != FINAL_STEP]  # a final notice is final
    # The first message waits out the group window (3-D Secure's does not: the customer is at checkout).
    first = now + cadence.group_window if kind == NotificationKind.PAYMENT_FAILED else now
    steps = [(step, first if not offset else max(first, start + offset)) for step, offset in offsets]
    if first_at is not None and steps and first_at > steps[0][1]:
        # The whole sequence moves with its first message: a reminder never goes out before it.
        delay = first_at - steps[0][1]
        steps = [(step, run_at + delay) for step, run_at in steps]
    return schedule(session, case, steps, kind, now, source_event_id=source_event_id)


def _final_notice_sent(session: Session, case: DunningCase) -> bool:
    sent = session.scalar(
        select(func.count(Notification.id)).where(
            Notification.case_id == case.id,
            Notification.step == FINAL_STEP,
            Notification.status == NotificationStatus.SENT,
        )
    )
    return bool(sent)


def move_final_notice(session: Session, case: DunningCase, inv: InvoiceView, now: datetime, cadence: Cadence) -> None:
    """Send the final notice before the provider's last retry, or now if it will not retry again."""
    if inv.retries_over:
        when = now + cadence.group_window  # no retry to come: this was the last attempt
    elif inv.next_payment_attempt is None:
        return  # retries go on, but the provider does not say when (Recurly): keep the cadence
    elif cadence.retry_attempts and inv.attempt_count + 1 >= cadence.retry_attempts:
        when = max(now, inv.next_payment_attempt - FINAL_NOTICE_LEAD)  # the next retry is the last one
    else:
        return
    session.execute(
        update(Notification)
        .where(
            Notification.case_id == case.id,
            Notification.episode == case.episode,
            Notification.step == FINAL_STEP,
            Notification.status == NotificationStatus.PENDING,
            Notification.run_at > when,
        )
        .values(run_at=when)
    )


def cancel_pending(session: Session, case: DunningCase, reason: str) -> int:
    """Cancel the case's messages not yet sent; returns how many."""
    result = session.execute(
        update(Notification)
        .where(Notification.case_id == case.id, Notification.status.in_(NOTIFICATION_DUE))
        .values(status=NotificationStatus.CANCELED, last_error=reason)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def record_failure(
    session: Session,
    inv: InvoiceView,
    *,
    failed_at: datetime,
    now: datetime,
    kind: str = NotificationKind.PAYMENT_FAILED,
    cadence: Cadence = DEFAULT_CADENCE,
    decline: Decline | None = None,
    alerts: AlertSettings | None = None,
    source_event_id: int | None = None,
) -> DunningCase:
    """A payment attempt failed: open or update the invoice's case and schedule its episode.

    The decline's class decides the words (template keys), the timing (a technical decline waits for
    the provider's retry) and whether the customer is contacted at all (`do_not_contact`: no message,
    the team is alerted).
    """
    if kind == NotificationKind.ACTION_REQUIRED and decline is None:
        decline = Decline(DeclineClass.AUTHENTICATION)
    # A new case starts with this failure's facts, so its INSERT is its only write: every statement in
    # this transaction holds SQLite's write turn, which deliveries wait for (docs/performance.md).
    decline_columns = _decline_columns(decline)
    first = dict(first_failed_at=failed_at, last_failed_at=failed_at, **decline_columns)
    case, created = _open_case(session, inv, now, **first)
    if case.status == CaseStatus.PAID:
        # The payment was processed before this older failure: it was a recovery after all.
        case.first_failed_at = case.last_failed_at = failed_at
        case.attempt_count = min(case.attempt_count, inv.attempt_count)
        _recover(
            session,
            case,
            paid_at=case.paid_at or now,
            now=now,
            attempts=case.attempt_count,
            attribution=Attribution.PROVIDER_RETRY,
        )
        return case
    if not case.is_open:
        log.info("failure for a closed case ignored", extra={"case_id": case.id, "invoice_id": inv.id})
        return case
    if case.pii_erased_at is not None:
        # The customer was deleted (their data erased): never message them again.
        log.info("failure for an erased customer ignored", extra={"case_id": case.id, "invoice_id": inv.id})
        return case
    _refresh(case, inv, now)
    case.first_failed_at = min(filter(None, (case.first_failed_at, failed_at)))
    case.last_failed_at = max(filter(None, (case.last_failed_at, failed_at)))
    for column, value in decline_columns.items():
        setattr(case, column, value)
    if case.status == CaseStatus.PAUSED:
        # The customer changed their payment method and the provider's retry still failed: a new episode.
        case.status = CaseStatus.OPEN
        case.episode += 1
    if alerts is not None:
        alert_outbox.on_failure(session, alerts, case, now)
    decline_class = DeclineClass(case.decline_class) if case.decline_class else DeclineClass.UNKNOWN
    first_at = first_message_at(decline_class, failed_at, inv.next_payment_attempt, default=now)
    if first_at is None:
        # A fraud signal or a withdrawn authorization: chasing the customer by email is the wrong move.
        cancel_pending(session, case, f"not contacted: the decline says {case.decline_code or decline_class}")
        return case
    start = failed_at if case.episode == 1 else now
    schedule_episode(
        session,
        case,
        start,
        now,
        kind=kind,
        cadence=cadence,
        first_at=first_at,
        source_event_id=source_event_id,
        new_case=created,
    )
    if kind == NotificationKind.PAYMENT_FAILED and cadence.final_notice_days is not None:
        move_final_notice(session, case, inv, now, cadence)
    return case


def _decline_columns(decline: Decline | None) -> dict[str, Any]:
    """The case's columns for the latest decline (none when the provider gave no reason)."""
    if decline is None:
        return {}
    return dict(
        decline_class=decline.decline_class,
        decline_code=(decline.reason or "")[:100] or None,
        advice_code=(decline.advice_code or "")[:100] or None,
    )


def pause_customer(session: Session, provider: str, customer_id: str, now: datetime) -> int:
    """The customer updated their payment method: stop the sequence and wait for the provider's retry.

    Returns how many cases paused. If the retry fails too, `record_failure` starts a new episode.
    """
    cases = session.scalars(
        select(DunningCase)
        .where(
            DunningCase.provider == provider,
            DunningCase.customer_id == customer_id,
            DunningCase.status == CaseStatus.OPEN,
        )
        .with_for_update()
    ).all()
    for case in cases:
        case.status, case.updated_at = CaseStatus.PAUSED, now
        cancel_pending(session, case, "paused: the customer updated the payment method")
    return len(cases)


def _refresh(case: DunningCase, inv: InvoiceView, now: datetime) -> None:
    """Keep the case's copy of the invoice current (events may arrive out of order: keep maxima)."""
    case.amount_due = inv.amount_due or case.amount_due
    case.attempt_count = max(case.attempt_count, inv.attempt_count)
    case.failure_reason = inv.failure_reason or case.failure_reason
    case.next_payment_attempt = inv.next_payment_attempt
    if case.pii_erased_at is None:  # erased names and emails are never written back
        case.customer_email = inv.customer_email or case.customer_email
        case.customer_name = inv.customer_name or case.customer_name
        case.hosted_invoice_url = inv.hosted_invoice_url or case.hosted_invoice_url
    case.customer_country = inv.customer_country or case.customer_country
    case.invoice_number = inv.number or case.invoice_number
    case.updated_at = now


def record_payment(
    session: Session, inv: InvoiceView, *, paid_at: datetime, now: datetime, alerts: AlertSettings | None = None
) -> DunningCase | None:
    """The invoice was paid: close its case as recovered and write the ledger (once)."""
    case = lock_case(session, inv.provider, inv.id)
    if case is None:
        if inv.attempt_count > 1:
            # Paid after earlier failed attempts whose event has not arrived yet (events are unordered):
            # remember the payment so the late failure is recorded as a recovery, not a new case.
            case = open_case(session, inv, now, status=CaseStatus.PAID)
            case.paid_at, case.closed_at = paid_at, now
        return case  # an invoice paid before any failure is not a recovery
    if case.status in (CaseStatus.RECOVERED, CaseStatus.PAID, CaseStatus.VOID):
        return case
    _recover(
        session,
        case,
        paid_at=paid_at,
        now=now,
        attempts=max(case.attempt_count, inv.attempt_count),
        attribution=attribute(session, case, inv, paid_at),
        amount=inv.amount_paid,
        alerts=alerts,
    )
    return case


def attribute(session: Session, case: DunningCase, inv: InvoiceView, paid_at: datetime) -> str:
    """Why the money came back: the customer used our link, the provider's retry worked, or paid out of band."""
    if inv.paid_out_of_band:
        return Attribution.OUT_OF_BAND
    if _first_click(session, case, before=paid_at) is not None:
        return Attribution.LINK_CLICK
    if inv.attempt_count > case.attempt_count:
        return Attribution.PROVIDER_RETRY  # a charge attempt happened after the last failure we saw
    return Attribution.OUT_OF_BAND  # paid with no new charge attempt (marked paid, credit, bank transfer)


def _first_click(session: Session, case: DunningCase, before: datetime) -> datetime | None:
    """The customer's first click on any of their recovery links since this case's failure.

    By customer, not by case: one message may list several invoices, and one visit pays them all.
    Payment times have whole seconds, so a click in that same second still came first.
    """
    since = case.first_failed_at or case.created_at
    return session.scalar(
        select(func.min(Click.clicked_at))
        .join(DunningCase, DunningCase.id == Click.case_id)
        .where(
            DunningCase.provider == case.provider,
            DunningCase.customer_id == case.customer_id,
            Click.clicked_at >= since,
            Click.clicked_at < before + timedelta(seconds=1),
        )
    )


def _recover(
    session: Session,
    case: DunningCase,
    *,
    paid_at: datetime,
    now: datetime,
    attempts: int,
    attribution: str,
    amount: int | None = None,
    alerts: AlertSettings | None = None,
) -> None:
    first_click = _first_click(session, case, before=paid_at)
    case.status, case.paid_at, case.closed_at, case.updated_at = CaseStatus.RECOVERED, paid_at, now, now
    case.close_reason = "invoice paid"
    cancel_pending(session, case, "invoice paid")
    ledger.record_recovery(
        session,
        case,
        amount=amount or case.amount_due,
        paid_at=paid_at,
        attempts=attempts,
        attribution=attribution,
        first_click=first_click,
        now=now,
    )
    if alerts is not None:
        alert_outbox.on_recovery(session, alerts, case, now)


def close_case(
    session: Session, provider: str, invoice_id: str, status: str, reason: str, now: datetime
) -> DunningCase | None:
    """Close an open case without a recovery (void, uncollectible, canceled) and cancel its messages."""
    case = lock_case(session, provider, invoice_id)
    if case is None or not case.is_open:
        return case
    case.status, case.close_reason, case.closed_at, case.updated_at = status, reason, now, now
    cancel_pending(session, case, reason)
    return case


def close_subscription(session: Session, provider: str, subscription_id: str, reason: str, now: datetime) -> int:
    """The subscription ended: close its open cases as canceled; returns how many."""
    invoice_ids = session.scalars(
        select(DunningCase.invoice_id).where(
            DunningCase.provider == provider,
            DunningCase.subscription_id == subscription_id,
            DunningCase.status.in_((CaseStatus.OPEN, CaseStatus.PAUSED)),
        )
    ).all()
    for invoice_id in invoice_ids:
        close_case(session, provider, invoice_id, CaseStatus.CANCELED, reason, now)
    return len(invoice_ids)


def settle(session: Session, inv: InvoiceView, now: datetime, alerts: AlertSettings | None = None) -> None:
    """Settle the case from the provider's own view of a closed invoice (its webhook may be late or lost)."""
    if inv.is_paid:
        record_payment(session, inv, paid_at=inv.paid_at or now, now=now, alerts=alerts)
    elif inv.status in CASE_CLOSED_AS:
        close_case(session, inv.provider, inv.id, CASE_CLOSED_AS[inv.status], f"invoice {inv.status}", now)
