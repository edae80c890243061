"""Personal data kept no longer than needed: customer names and emails on cases and ledger rows.

- `PII_RETENTION_DAYS` (default 365) after a case closes, the worker's upkeep erases its customer's name
  and email, its hosted invoice link (the page shows both) and the names and emails on its ledger rows
  (`erase_expired`: batches, idempotent, read through a partial index of the cases still holding them).
- A deleted customer (Stripe `customer.deleted`) is erased at once, open cases included, and the
  messages not yet sent to them are canceled (`erase_customer`).
Amounts, ids and dates stay, so no finance figure changes. The case keeps `pii_erased_at`, so a late
event (events are unordered) never writes a name back and never messages an erased customer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from webhook_app import dunning, ledger
from webhook_app.db import Database
from webhook_app.models import DunningCase
from webhook_app.states import CASE_OPEN

log = logging.getLogger(__name__)

ERASE_BATCH = 500


def expired_cases(session: Session, cutoff: datetime, limit: int) -> list[int]:
    """Ids of closed cases still holding personal data, closed before `cutoff` (oldest first)."""
    return list(
        session.scalars(
            select(DunningCase.id)
            .where(
                DunningCase.pii_erased_at.is_(None),
                DunningCase.closed_at < cutoff,
                DunningCase.status.not_in(tuple(CASE_OPEN)),
            )
            .order_by(DunningCase.closed_at)
            .limit(limit)
        )
    )


def _erase_cases(session: Session, case_ids: Sequence[int], now: datetime) -> None:
    session.execute(
        update(DunningCase)
        .where(DunningCase.id.in_(case_ids))
        .values(customer_name=None, customer_email=None, hosted_invoice_url=None, pii_erased_at=now)
    )
    ledger.erase_personal_data(session, case_ids)


def erase_expired(db: Database, now: datetime, retention_days: int, batch: int = ERASE_BATCH) -> int:
    """Erase names and emails of cases closed more than `retention_days` ago; returns how many cases."""
    cutoff = now - timedelta(days=retention_days)
    total = 0
    while True:
        with db.reading() as s:  # usually nothing is due: no write lock for that (SQLite)
            ids = expired_cases(s, cutoff, batch)
        if ids:
            with db.session() as s:
                ids = expired_cases(s, cutoff, batch)  # again under the write lock: the same or fewer
                _erase_cases(s, ids, now)
        total += len(ids)
        if len(ids) < batch:
            if total:
                log.info("personal data erased on %d closed cases (retention %d days)", total, retention_days)
            return total


def erase_customer(session: Session, provider: str, customer_id: str, now: datetime) -> int:
    """The customer was deleted: erase them on all their cases and ledger rows now; returns how many cases."""
    cases = session.scalars(
        select(DunningCase)
        .where(DunningCase.provider == provider, DunningCase.customer_id == customer_id)
        .with_for_update()
    ).all()
    for case in cases:
        if case.is_open:
            dunning.cancel_pending(session, case, "customer deleted")
        case.updated_at = now
    if cases:
        _erase_cases(session, [case.id for case in cases], now)
        log.info("personal data of a deleted customer erased on %d cases", len(cases), extra={"provider": provider})
    return len(cases)
