"""Team alerts as outbox rows: queued in the same transaction as what they report, sent by the worker.

When: a first failure at or above `ALERT_MIN_AMOUNT` for its currency, a failure whose reason says not
to contact the customer (fraud, withdrawn authorization), a final notice sent, the recovery of a case
the team was alerted about, and a daily digest of yesterday (`ALERT_DIGEST_HOUR`, UTC).
Where: one row per channel (Slack incoming webhook, email through the configured messenger), so a
channel that fails is retried without repeating the other.
Once: `team_alerts.key` is unique per (channel, kind, provider, invoice), and per day for the digest;
retries, duplicate deliveries and replays insert nothing new. Quiet hours are the customers', not the
team's: alerts go out at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.alerts import Alert, AlertKind, CurrencyTotal, at_or_above, render_text
from webhook_app.claims import Claim, claim, finish
from webhook_app.claims import any_due as any_due_rows
from webhook_app.config import AlertSettings
from webhook_app.declines import DeclineClass
from webhook_app.models import DunningCase, LedgerEntry, TeamAlert
from webhook_app.sql import insert_all_if_absent
from webhook_app.states import CASE_OPEN, LedgerKind, NotificationStatus

log = logging.getLogger(__name__)

SLACK, EMAIL = "slack", "email"


def channels(settings: AlertSettings) -> list[str]:
    """The configured alert channels."""
    return [name for name, on in ((SLACK, settings.slack_webhook_url), (EMAIL, settings.email)) if on]


def _key(channel: str, kind: str, provider: str | None, subject: str) -> str:
    return f"alert:{channel}:{kind}:{provider or ''}:{subject}"


def queue(session: Session, settings: AlertSettings, kind: AlertKind, case: DunningCase, now: datetime) -> int:
    """Queue a case alert on every channel (once per case and kind, ever); returns how many were new."""
    rows = [
        dict(
            key=_key(channel, kind, case.provider, case.invoice_id),
            channel=channel,
            kind=kind,
            provider=case.provider,
            case_id=case.id,
            status=NotificationStatus.PENDING,
            run_at=now,
            attempts=0,
            created_at=now,
        )
        for channel in channels(settings)
    ]
    return insert_all_if_absent(session, TeamAlert.__table__, rows, ["key"])


def on_failure(session: Session, settings: AlertSettings, case: DunningCase, now: datetime) -> None:
    """Alerts a failed payment calls for: a do-not-contact reason, and a large first failure."""
    if not settings.enabled:
        return
    if case.decline_class == DeclineClass.DO_NOT_CONTACT:
        queue(session, settings, AlertKind.DO_NOT_CONTACT, case, now)
    if case.episode == 1 and at_or_above(case.amount_due, case.currency, dict(settings.min_amounts)):
        queue(session, settings, AlertKind.LARGE_FAILURE, case, now)


def on_recovery(session: Session, settings: AlertSettings, case: DunningCase, now: datetime) -> None:
    """A case the team was alerted about came back: say so (the good news is worth a line too)."""
    if not settings.enabled:
        return
    alerted = session.scalar(
        select(func.count(TeamAlert.id)).where(
            TeamAlert.case_id == case.id, TeamAlert.kind.in_((AlertKind.LARGE_FAILURE, AlertKind.DO_NOT_CONTACT))
        )
    )
    if alerted:
        queue(session, settings, AlertKind.RECOVERED, case, now)


def queue_digest(session: Session, settings: AlertSettings, now: datetime) -> int:
    """Yesterday's digest, once the configured UTC hour has come (once per day and channel)."""
    if settings.digest_hour is None or now.hour < settings.digest_hour:
        return 0
    day = (now - timedelta(days=1)).date().isoformat()
    rows = [
        dict(
            key=_key(channel, AlertKind.DIGEST, None, day),
            channel=channel,
            kind=AlertKind.DIGEST,
            period=day,
            status=NotificationStatus.PENDING,
            run_at=now,
            attempts=0,
            created_at=now,
        )
        for channel in channels(settings)
    ]
    return insert_all_if_absent(session, TeamAlert.__table__, rows, ["key"])


def digest_totals(session: Session, day: str) -> tuple[CurrencyTotal, ...]:
    """Per currency for one UTC day: what failed (first failures), what came back, what is still open."""
    start = datetime.fromisoformat(day)
    end = start + timedelta(days=1)
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failed = session.execute(
        select(DunningCase.currency, func.count(), func.sum(DunningCase.amount_due))
        .where(DunningCase.first_failed_at >= start, DunningCase.first_failed_at < end)
        .group_by(DunningCase.currency)
    )
    for currency, count, amount in failed:
        sums[currency]["failed_count"], sums[currency]["failed_amount"] = count, int(amount or 0)
    recovered = session.execute(
        select(LedgerEntry.currency, func.count(), func.sum(LedgerEntry.amount))
        .where(
            LedgerEntry.kind == LedgerKind.RECOVERY, LedgerEntry.recovered_at >= start, LedgerEntry.recovered_at < end
        )
        .group_by(LedgerEntry.currency)
    )
    for currency, count, amount in recovered:
        sums[currency]["recovered_count"], sums[currency]["recovered_amount"] = count, int(amount or 0)
    still_open = session.execute(
        select(DunningCase.currency, func.count(), func.sum(DunningCase.amount_due))
        .where(DunningCase.status.in_(CASE_OPEN), DunningCase.first_failed_at < end)
        .group_by(DunningCase.currency)
    )
    for currency, count, amount in still_open:
        sums[currency]["open_count"], sums[currency]["open_amount"] = count, int(amount or 0)
    return tuple(CurrencyTotal(currency, **values) for currency, values in sorted(sums.items()))


def build_alert(session: Session, row: TeamAlert, dashboard: Any = None) -> Alert:
    """The alert a row stands for, from the case as it is now (or the day's totals for a digest)."""
    if row.kind == AlertKind.DIGEST:
        return Alert(kind=AlertKind.DIGEST, totals=digest_totals(session, row.period or ""), period=row.period)
    case = session.get(DunningCase, row.case_id)
    if case is None:
        raise LookupError(f"team alert {row.id} names no case")
    return Alert(
        kind=AlertKind(row.kind),
        provider=case.provider,
        customer_id=case.customer_id,
        customer_name=case.customer_name,
        invoice_id=case.invoice_id,
        invoice_number=case.invoice_number,
        amount=case.amount_due,
        currency=case.currency,
        decline_class=DeclineClass(case.decline_class) if case.decline_class else None,
        decline_code=case.decline_code,
        dashboard_url=dashboard(case.provider, "invoice", case.invoice_id, case.livemode) if dashboard else None,
    )


ALERT_READY = (NotificationStatus.PENDING, NotificationStatus.HELD)


def any_due(session: Session, now: datetime) -> bool:
    """Whether `claim_alert` would find an alert now (a read: no write lock on SQLite)."""
    return any_due_rows(session, TeamAlert, now, ALERT_READY, NotificationStatus.SENDING)


def claim_alert(session: Session, now: datetime, lease_seconds: float) -> Claim | None:
    """Claim one due alert (the generic claim, as for events)."""
    claims = claim(
        session,
        TeamAlert,
        now=now,
        lease_seconds=lease_seconds,
        limit=1,
        ready=ALERT_READY,
        busy=NotificationStatus.SENDING,
    )
    return claims[0] if claims else None


def finish_sent(session: Session, claimed: Claim, now: datetime) -> bool:
    """Record the alert as sent (if this claim still owns it)."""
    return finish(session, TeamAlert, claimed, status=NotificationStatus.SENT, sent_at=now, last_error=None)


def text_of(alert: Alert) -> str:
    """The alert as plain text (email body, console)."""
    return render_text(alert)
