"""Every write to the recovery ledger: recoveries, the corrections that offset them, settled figures.

The ledger is append-only for amounts. A recovery is one row keyed `recovery:<invoice>`; money given back after a
recovery is a new, negative row dated when it was given back, with its own key, so a closed month's
totals never change and every figure can be audited row by row. Keys are unique per provider: replays
and duplicate deliveries add nothing twice. Whatever the sources, corrections never take an invoice
below zero (a guard against double counting, e.g. across a Stripe API-version upgrade).
`webhook_app.finance` only reads what is written here.

Rows carry the invoice number and the customer's name and email (copied from the case, so finance reads
them without a join). Two updates are sanctioned, neither touching an amount: a recovery's settled
figures (the provider's balance transaction, in the payout currency) are filled in once, from `pending`;
and names and emails are erased when their retention ends (`webhook_app.privacy`).

Every write here also adds to the daily roll-ups (`webhook_app.rollups`) in the same transaction: a
new row to its day's group, a settled recovery from its `pending` group to its settled one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from webhook_app import rollups
from webhook_app.domain import CorrectionVoided, MoneyReturned, Settlement
from webhook_app.errors import TransientError
from webhook_app.models import DunningCase, LedgerEntry
from webhook_app.rollups import EntryKey
from webhook_app.sql import insert_if_absent
from webhook_app.states import CASE_OPEN, LedgerKind, SettlementStatus

log = logging.getLogger(__name__)


def _seconds(later: datetime | None, earlier: datetime | None) -> int | None:
    if later is None or earlier is None:
        return None
    return max(0, int((later - earlier).total_seconds()))


def record_recovery(
    session: Session,
    case: DunningCase,
    *,
    amount: int,
    paid_at: datetime,
    attempts: int,
    attribution: str,
    first_click: datetime | None,
    now: datetime,
) -> bool:
    """Append the case's recovery (once: the key is the invoice); returns whether it was new."""
    row = dict(
        provider=case.provider,
        entry_key=f"recovery:{case.invoice_id}",
        kind=LedgerKind.RECOVERY,
        case_id=case.id,
        invoice_id=case.invoice_id,
        customer_id=case.customer_id,
        amount=amount,
        currency=case.currency,
        livemode=case.livemode,
        first_failed_at=case.first_failed_at,
        recovered_at=paid_at,
        seconds_to_recover=_seconds(paid_at, case.first_failed_at),
        attempts=attempts,
        messages_sent=case.messages_sent,
        attribution=attribution,
        first_message_at=case.first_message_at,
        first_click_at=first_click,
        seconds_message_to_click=_seconds(first_click, case.first_message_at),
        seconds_click_to_payment=_seconds(paid_at, first_click),
        invoice_number=case.invoice_number,
        customer_name=case.customer_name,
        customer_email=case.customer_email,
        settlement_status=SettlementStatus.PENDING,
        created_at=now,
    )
    inserted = insert_if_absent(session, LedgerEntry.__table__, row, ["provider", "entry_key"])
    if inserted:
        rollups.roll_up(session, row, case.decline_class or rollups.UNKNOWN_CLASS)
    return inserted


def _recovery(session: Session, provider: str, invoice_id: str) -> LedgerEntry | None:
    return session.scalars(
        select(LedgerEntry).where(LedgerEntry.provider == provider, LedgerEntry.entry_key == f"recovery:{invoice_id}")
    ).one_or_none()


def _recovery_or_wait(session: Session, provider: str, invoice_id: str, source: str) -> LedgerEntry | None:
    """The invoice's recovery row; None if it never was a recovery.

    Money can only be given back once paid, so a refund for an invoice whose case is still open means
    the payment event has not been processed yet (events are unordered): retry later.
    """
    recovery = _recovery(session, provider, invoice_id)
    if recovery is not None:
        return recovery
    status = session.scalar(
        select(DunningCase.status).where(DunningCase.provider == provider, DunningCase.invoice_id == invoice_id)
    )
    if status in CASE_OPEN:
        raise TransientError(f"{source} for {invoice_id} before its payment was recorded; retrying later")
    return None


def _lock(session: Session, recovery: LedgerEntry) -> None:
    """Serialize corrections of one invoice (SQLite already has one writer at a time)."""
    if recovery.case_id is not None:
        session.execute(select(DunningCase.id).where(DunningCase.id == recovery.case_id).with_for_update())


def _corrections_total(session: Session, recovery: LedgerEntry, key_prefix: str | None = None) -> int:
    query = select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.provider == recovery.provider,
        LedgerEntry.invoice_id == recovery.invoice_id,
        LedgerEntry.kind != LedgerKind.RECOVERY,
    )
    if key_prefix is not None:
        query = query.where(LedgerEntry.entry_key.startswith(key_prefix, autoescape=True))
    return int(session.scalar(query) or 0)


def _insert(
    session: Session, recovery: LedgerEntry, *, key: str, kind: str, amount: int, at: datetime, now: datetime
) -> bool:
    row: dict[str, Any] = dict(
        provider=recovery.provider,
        entry_key=key,
        kind=kind,
        case_id=recovery.case_id,
        invoice_id=recovery.invoice_id,
        customer_id=recovery.customer_id,
        amount=amount,
        currency=recovery.currency,
        livemode=recovery.livemode,
        first_failed_at=None,
        recovered_at=at,
        seconds_to_recover=None,
        attempts=0,
        messages_sent=0,
        attribution=recovery.attribution,
        first_message_at=None,
        first_click_at=None,
        seconds_message_to_click=None,
        seconds_click_to_payment=None,
        invoice_number=recovery.invoice_number,
        customer_name=recovery.customer_name,
        customer_email=recovery.customer_email,
        settlement_status=None,
        created_at=now,
    )
    inserted = insert_if_absent(session, LedgerEntry.__table__, row, ["provider", "entry_key"])
    if inserted:
        rollups.roll_up(session, row, rollups.decline_class_of(session, recovery.case_id))
        log.info("ledger correction recorded", extra={"invoice_id": recovery.invoice_id, "entry_key": key})
    return inserted


def offset(
    session: Session, recovery: LedgerEntry, *, key: str, kind: str, given_back: int, at: datetime, now: datetime
) -> int:
    """Append a row taking `given_back` (minor units, positive) off the recovery; returns the amount taken.

    Capped at what the invoice still counts as recovered, so corrections never make it negative.
    """
    if given_back <= 0:
        return 0
    remaining = recovery.amount + _corrections_total(session, recovery)
    amount = min(given_back, remaining)
    if amount <= 0:
        log.warning(
            "correction ignored: the invoice's recovery is already fully offset",
            extra={"invoice_id": recovery.invoice_id, "entry_key": key},
        )
        return 0
    return amount if _insert(session, recovery, key=key, kind=kind, amount=-amount, at=at, now=now) else 0


def money_returned(session: Session, provider: str, event: MoneyReturned, now: datetime) -> int:
    """Offset the invoice's recovery by money given back; returns the amount recorded (0 if none)."""
    recovery = _recovery_or_wait(session, provider, event.invoice_id, event.kind)
    if recovery is None:
        return 0
    if event.currency and event.currency != recovery.currency:
        log.warning(
            "%s in %s for a recovery in %s ignored: amounts in different currencies cannot offset",
            event.kind,
            event.currency,
            recovery.currency,
            extra={"invoice_id": recovery.invoice_id},
        )
        return 0
    _lock(session, recovery)
    given_back = event.amount
    if event.cumulative_prefix is not None:
        given_back -= -_corrections_total(session, recovery, event.cumulative_prefix)
    return offset(session, recovery, key=event.key, kind=event.kind, given_back=given_back, at=event.at, now=now)


def correction_voided(session: Session, provider: str, event: CorrectionVoided, now: datetime) -> bool:
    """A correction no longer stands: append a row reversing it (once)."""
    original = session.scalars(
        select(LedgerEntry).where(LedgerEntry.provider == provider, LedgerEntry.entry_key == event.key)
    ).one_or_none()
    if original is None or original.amount >= 0:
        return False
    recovery = _recovery(session, provider, original.invoice_id)
    if recovery is None:
        return False
    _lock(session, recovery)
    return _insert(
        session, recovery, key=event.reversal_key, kind=original.kind, amount=-original.amount, at=event.at, now=now
    )


# -- settled figures ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingSettlement:
    """A recovery whose settled figures are still to be looked up."""

    id: int
    provider: str
    invoice_id: str
    created_at: datetime


def pending_settlements(session: Session, limit: int) -> list[PendingSettlement]:
    """Pending recoveries, the least recently looked up first (so rows not settled yet never starve others)."""
    rows = session.execute(
        select(LedgerEntry.id, LedgerEntry.provider, LedgerEntry.invoice_id, LedgerEntry.created_at)
        .where(LedgerEntry.settlement_status == SettlementStatus.PENDING)
        .order_by(func.coalesce(LedgerEntry.settlement_checked_at, LedgerEntry.created_at), LedgerEntry.id)
        .limit(limit)
    ).all()
    return [PendingSettlement(row.id, row.provider, row.invoice_id, row.created_at) for row in rows]


def settlement_checked(session: Session, entry_id: int, now: datetime) -> None:
    """Looked up, not settled yet: stays pending, behind the rows not looked up as recently."""
    session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.id == entry_id, LedgerEntry.settlement_status == SettlementStatus.PENDING)
        .values(settlement_checked_at=now)
    )


# What a settled row's roll-up group is made of (read back from the UPDATE, in the same statement).
_SETTLED_RETURNING = (
    LedgerEntry.provider,
    LedgerEntry.currency,
    LedgerEntry.livemode,
    LedgerEntry.kind,
    LedgerEntry.attribution,
    LedgerEntry.recovered_at,
    LedgerEntry.case_id,
    LedgerEntry.amount,
    LedgerEntry.settled_amount,
    LedgerEntry.settled_fee,
    LedgerEntry.settled_net,
    LedgerEntry.settled_currency,
    LedgerEntry.settlement_status,
)


def _move_out_of_pending(session: Session, row: Any) -> None:
    """A recovery left `pending`: take it out of its pending roll-up group and add it to its new one.

    Only a pending row is updated (the UPDATE's WHERE), and a pending row has no settled figures, so
    the group it leaves is `(pending, no payout currency)` with nothing settled.
    """
    decline_class = rollups.decline_class_of(session, row.case_id)
    day = rollups.day_of(row.recovered_at)
    dims = (day, row.provider, row.currency, row.livemode, row.kind, row.attribution, decline_class)
    rollups.add_entry(session, EntryKey(*dims, SettlementStatus.PENDING), entries=-1, amount=-row.amount)
    rollups.add_entry(
        session,
        EntryKey(*dims, row.settlement_status, row.settled_currency),
        entries=1,
        amount=row.amount,
        settled_amount=row.settled_amount or 0,
        settled_fee=row.settled_fee or 0,
        settled_net=row.settled_net or 0,
    )


def record_settlement(session: Session, entry_id: int, settlement: Settlement, now: datetime) -> bool:
    """Fill a pending recovery's settled figures (once: a row no longer pending is left alone)."""
    row = session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.id == entry_id, LedgerEntry.settlement_status == SettlementStatus.PENDING)
        .values(
            settlement_status=SettlementStatus.SETTLED,
            settlement_id=settlement.reference,
            settled_amount=settlement.amount,
            settled_fee=settlement.fee,
            settled_net=settlement.net,
            settled_currency=settlement.currency,
            settled_exchange_rate=None if settlement.exchange_rate is None else str(settlement.exchange_rate),
            settlement_checked_at=now,
        )
        .returning(*_SETTLED_RETURNING)
    ).first()
    if row is None:
        return False
    _move_out_of_pending(session, row)
    return True


def close_settlement(session: Session, entry_id: int, status: SettlementStatus, now: datetime) -> bool:
    """A pending recovery has no settled figures to record (`none` or `unavailable`); once, like above."""
    row = session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.id == entry_id, LedgerEntry.settlement_status == SettlementStatus.PENDING)
        .values(settlement_status=status, settlement_checked_at=now)
        .returning(*_SETTLED_RETURNING)
    ).first()
    if row is None:
        return False
    _move_out_of_pending(session, row)
    return True


# -- personal data ------------------------------------------------------------------------------------
def erase_personal_data(session: Session, case_ids: Sequence[int]) -> int:
    """Erase names and emails on the ledger rows of these cases (amounts and ids stay); returns rows changed."""
    if not case_ids:
        return 0
    result = session.execute(
        update(LedgerEntry)
        .where(
            LedgerEntry.case_id.in_(case_ids),
            (LedgerEntry.customer_name.is_not(None)) | (LedgerEntry.customer_email.is_not(None)),
        )
        .values(customer_name=None, customer_email=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
