"""The case lists finance acts on: what is at risk now, from whom; and what was lost, and why.

- At risk now: every open or paused case (not limited to the period: it is the present), with the
  customer, the invoice, days since the first failure, messages sent, the last click on a recovery link
  and the next step with its time. Filtered by currency, mode and provider; sorted by first failure or
  (within one currency) by amount due.
- Lost: cases closed in the period as void, uncollectible or canceled, with the reason.
Both are paged by keyset like the ledger; the page's clicks and next messages are read in two more
queries over the page's case ids (indexed by case), never per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.dunning import ACTION_STEP, FINAL_STEP
from webhook_app.finance.cursor import AT_RISK_SORTS, LOST_SORTS, Cursor
from webhook_app.finance.paging import Page, keyset
from webhook_app.finance.period import iso
from webhook_app.finance.queries import MAX_PAGE_SIZE, Filters, case_where
from webhook_app.models import Click, DunningCase, Notification
from webhook_app.money import format_amount, to_decimal
from webhook_app.providers import DashboardLink
from webhook_app.states import CASE_LOST, CASE_OPEN, NOTIFICATION_DUE, CaseStatus, NotificationKind

LOST_REASONS = {
    CaseStatus.VOID: "Invoice voided",
    CaseStatus.UNCOLLECTIBLE: "Written off as uncollectible",
    CaseStatus.CANCELED: "Subscription canceled for non-payment",
}
DAY = 86400


def step_label(kind: str, step: int) -> str:
    """What the next message of a case is, for people."""
    if kind == NotificationKind.ACTION_REQUIRED or step == ACTION_STEP:
        return "Authentication request"
    if step == FINAL_STEP:
        return "Final notice"
    return "First message" if step == 0 else f"Reminder {step}"


@dataclass(frozen=True)
class NextStep:
    """What happens next on an open case, and when (None: nothing scheduled)."""

    label: str
    at: datetime | None


@dataclass(frozen=True)
class RiskTotal:
    """Open cases and the money they owe, in one currency."""

    currency: str
    cases: int
    amount: int


# -- at risk now ----------------------------------------------------------------------------------------
_SINCE = func.coalesce(DunningCase.first_failed_at, DunningCase.created_at)  # campaign cases never failed with us

AT_RISK_COLUMNS = (
    DunningCase.id,
    DunningCase.provider,
    DunningCase.invoice_id,
    DunningCase.invoice_number,
    DunningCase.customer_id,
    DunningCase.customer_name,
    DunningCase.customer_email,
    DunningCase.amount_due,
    DunningCase.currency,
    DunningCase.livemode,
    DunningCase.status,
    DunningCase.messages_sent,
    DunningCase.next_payment_attempt,
    _SINCE.label("since"),
)


def at_risk_totals(session: Session, f: Filters) -> list[RiskTotal]:
    """Open cases now, per currency (the filters' currency, mode and provider; not the period)."""
    rows = session.execute(
        select(DunningCase.currency, func.count(), func.sum(DunningCase.amount_due))
        .where(DunningCase.status.in_(tuple(CASE_OPEN)), *case_where(f))
        .group_by(DunningCase.currency)
        .order_by(DunningCase.currency)
    )
    return [RiskTotal(currency, count, int(amount or 0)) for currency, count, amount in rows]


def at_risk_page(session: Session, f: Filters, sort: str, cursor: Cursor | None = None, limit: int = 50) -> Page:
    """A page of open cases in `sort` order (see AT_RISK_SORTS)."""
    if cursor is not None:
        sort = cursor.sort
    query = select(*AT_RISK_COLUMNS).where(DunningCase.status.in_(tuple(CASE_OPEN)), *case_where(f))
    kind = AT_RISK_SORTS[sort][0]
    return keyset(
        session,
        query,
        sorts=AT_RISK_SORTS,
        sort=sort,
        columns={"date": _SINCE, "amount": DunningCase.amount_due},
        id_column=DunningCase.id,
        key_of=lambda row: row.since if kind == "date" else row.amount_due,
        cursor=cursor,
        limit=max(1, min(limit, MAX_PAGE_SIZE)),
    )


def last_clicks(session: Session, case_ids: Sequence[int]) -> dict[int, datetime]:
    """The latest click on a recovery link of each case."""
    if not case_ids:
        return {}
    rows = session.execute(
        select(Click.case_id, func.max(Click.clicked_at)).where(Click.case_id.in_(case_ids)).group_by(Click.case_id)
    )
    return {case_id: at for case_id, at in rows}


def next_messages(session: Session, case_ids: Sequence[int]) -> dict[int, NextStep]:
    """The earliest message still due of each case."""
    if not case_ids:
        return {}
    rows = session.execute(
        select(Notification.case_id, Notification.kind, Notification.step, Notification.run_at)
        .where(Notification.case_id.in_(case_ids), Notification.status.in_(tuple(NOTIFICATION_DUE)))
        .order_by(Notification.case_id, Notification.run_at, Notification.step)
    )
    out: dict[int, NextStep] = {}
    for case_id, kind, step, run_at in rows:
        out.setdefault(case_id, NextStep(step_label(kind, step), run_at))
    return out


def next_step(row: Any, message: NextStep | None) -> NextStep:
    """The next thing that happens to an open case: our next message, else the provider's retry."""
    if message is not None:
        return message
    if row.status == CaseStatus.PAUSED:
        return NextStep("Provider retry (payment method updated)", row.next_payment_attempt)
    if row.next_payment_attempt is not None:
        return NextStep("Provider retry", row.next_payment_attempt)
    return NextStep("Nothing scheduled", None)


def at_risk_items(
    session: Session, rows: Sequence[Any], now: datetime, dashboard: DashboardLink
) -> list[dict[str, Any]]:
    """The page's rows as plain values (JSON-ready, with display strings for the dashboard)."""
    ids = [row.id for row in rows]
    clicks, messages = last_clicks(session, ids), next_messages(session, ids)
    items = []
    for row in rows:
        step = next_step(row, messages.get(row.id))
        clicked = clicks.get(row.id)
        items.append(
            {
                "provider": row.provider,
                "status": row.status,
                "invoice_id": row.invoice_id,
                "invoice_number": row.invoice_number,
                "customer_id": row.customer_id,
                "customer_name": row.customer_name,
                "customer_email": row.customer_email,
                "currency": row.currency,
                "amount_minor": row.amount_due,
                "amount": str(to_decimal(row.amount_due, row.currency)),
                "amount_display": format_amount(row.amount_due, row.currency),
                "livemode": bool(row.livemode),
                "first_failed_at": iso(row.since),
                "days_since_first_failure": max(0, int((now - row.since).total_seconds() // DAY)),
                "messages_sent": row.messages_sent,
                "last_click_at": iso(clicked),
                "next_step": step.label,
                "next_step_at": iso(step.at),
                "invoice_url": dashboard(row.provider, "invoice", row.invoice_id, row.livemode),
                "customer_url": dashboard(row.provider, "customer", row.customer_id, row.livemode),
            }
        )
    return items


# -- lost -------------------------------------------------------------------------------------------------
LOST_COLUMNS = (
    DunningCase.id,
    DunningCase.provider,
    DunningCase.invoice_id,
    DunningCase.invoice_number,
    DunningCase.customer_id,
    DunningCase.customer_name,
    DunningCase.customer_email,
    DunningCase.amount_due,
    DunningCase.currency,
    DunningCase.livemode,
    DunningCase.status,
    DunningCase.close_reason,
    DunningCase.messages_sent,
    DunningCase.first_failed_at,
    DunningCase.closed_at,
)


def lost_page(session: Session, f: Filters, sort: str, cursor: Cursor | None = None, limit: int = 50) -> Page:
    """A page of the cases lost in the period, in `sort` order (see LOST_SORTS)."""
    if cursor is not None:
        sort = cursor.sort
    query = select(*LOST_COLUMNS).where(
        DunningCase.status.in_(tuple(CASE_LOST)),
        DunningCase.closed_at >= f.period.since,
        DunningCase.closed_at < f.period.until,
        *case_where(f),
    )
    kind = LOST_SORTS[sort][0]
    return keyset(
        session,
        query,
        sorts=LOST_SORTS,
        sort=sort,
        columns={"date": DunningCase.closed_at, "amount": DunningCase.amount_due},
        id_column=DunningCase.id,
        key_of=lambda row: row.closed_at if kind == "date" else row.amount_due,
        cursor=cursor,
        limit=max(1, min(limit, MAX_PAGE_SIZE)),
    )


def lost_items(rows: Sequence[Any], dashboard: DashboardLink) -> list[dict[str, Any]]:
    """The page's lost cases as plain values, with the reason in words."""
    items = []
    for row in rows:
        chased = None
        if row.first_failed_at is not None:
            chased = max(0, int((row.closed_at - row.first_failed_at).total_seconds() // DAY))
        items.append(
            {
                "provider": row.provider,
                "status": row.status,
                "reason": LOST_REASONS.get(row.status, row.status),
                "close_reason": row.close_reason,
                "invoice_id": row.invoice_id,
                "invoice_number": row.invoice_number,
                "customer_id": row.customer_id,
                "customer_name": row.customer_name,
                "customer_email": row.customer_email,
                "currency": row.currency,
                "amount_minor": row.amount_due,
                "amount": str(to_decimal(row.amount_due, row.currency)),
                "amount_display": format_amount(row.amount_due, row.currency),
                "livemode": bool(row.livemode),
                "first_failed_at": iso(row.first_failed_at),
                "closed_at": iso(row.closed_at),
                "days_chased": chased,
                "messages_sent": row.messages_sent,
                "invoice_url": dashboard(row.provider, "invoice", row.invoice_id, row.livemode),
                "customer_url": dashboard(row.provider, "customer", row.customer_id, row.livemode),
            }
        )
    return items
