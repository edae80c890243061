"""Claiming from the notifications outbox: one customer's due messages at a time, never split.

A customer with several unpaid invoices gets one message listing them all, so a claim takes the
oldest due notification *and* that customer's other notifications of the same kind due now or within
the group window (DUNNING_GROUP_WINDOW_SECONDS), under one token: an invoice that failed two seconds
after another waits a little less, and the customer gets one message instead of two. Claims of one
customer are serialized by locking all of the customer's case rows (SQLite: BEGIN IMMEDIATE already
serializes writers). Without that lock two workers could each take one invoice and send two messages.

On PostgreSQL concurrent claimers pick different rows: the candidate is read `FOR UPDATE SKIP LOCKED`,
so a claimer passes over a notification another one is claiming. (Before, every claimer picked the
same oldest row and all but one found it taken: with 24 sending threads, 1.5 wasted claims per message
sent, about a third of the worker's CPU; docs/performance.md.) The customer's cases are then locked
without waiting (SKIP LOCKED, compared with all of them): a claimer that finds one held, by another
claimer of the same customer or by an event being handled, backs off instead of waiting while it holds
its candidate, which the other claimer's group may be about to take (a wait there could close a
deadlock). Backing off is not "nothing due": `claim_next` tries again in a fresh transaction, instead of
letting the thread idle for a poll interval.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from webhook_app.claims import Claim, due_rows
from webhook_app.claims import any_due as any_due_rows
from webhook_app.db import Database
from webhook_app.models import DunningCase, Notification
from webhook_app.states import NOTIFICATION_DUE, CaseStatus, NotificationStatus


@dataclass(frozen=True)
class Batch:
    """A claimed notification (the message's primary) and the customer's others sent along with it.

    `notification` and `case`: the primary's rows as the claim left them (detached), so sending needs no
    transaction of its own to read them; None when the batch was made elsewhere (sending reads them).
    """

    claim: Claim
    sibling_ids: tuple[int, ...] = ()
    notification: Notification | None = field(default=None, compare=False)
    case: DunningCase | None = field(default=None, compare=False)


def _due(now: datetime) -> ColumnElement[bool]:
    return due_rows(Notification, now, NOTIFICATION_DUE, NotificationStatus.SENDING)


def any_due(session: Session, now: datetime) -> bool:
    """Whether `claim_batch` would find a message now (a read: no write lock on SQLite)."""
    return any_due_rows(session, Notification, now, NOTIFICATION_DUE, NotificationStatus.SENDING)


CLAIM_TRIES = 8  # a claimer that keeps losing the race to other threads gives up after this many


class _Taken:
    """Another claimer took the candidate between our read and our update, or another transaction
    holds one of its customer's cases."""


TAKEN = _Taken()


def claim_next(
    db: Database, *, now: datetime, lease_seconds: float, group_window: timedelta = timedelta(0)
) -> Batch | None:
    """`claim_batch` in its own transaction, tried again while other claimers win the race; None when
    nothing is due."""
    passed: set[int] = set()  # candidates found taken: the next try looks past them
    for _ in range(CLAIM_TRIES):
        with db.session() as s:
            outcome = _claim(s, now=now, lease_seconds=lease_seconds, group_window=group_window, passed=passed)
        if outcome is not TAKEN:
            return outcome if isinstance(outcome, Batch) else None
    return None


def claim_batch(
    session: Session, *, now: datetime, lease_seconds: float, group_window: timedelta = timedelta(0)
) -> Batch | None:
    """Claim the oldest due notification and its customer's other ones due within `group_window`;
    None when nothing is due or another claimer took it first.

    Commits nothing: the caller's transaction does.
    """
    outcome = _claim(session, now=now, lease_seconds=lease_seconds, group_window=group_window)
    return outcome if isinstance(outcome, Batch) else None


def _claim(
    session: Session, *, now: datetime, lease_seconds: float, group_window: timedelta, passed: set[int] | None = None
) -> Batch | _Taken | None:
    """The claim (see `claim_batch`); TAKEN, with the candidate added to `passed`, when it lost a race."""
    passed = set() if passed is None else passed
    due = [_due(now), Notification.id.not_in(passed)] if passed else [_due(now)]
    candidate = session.execute(
        select(Notification.id, Notification.kind, DunningCase.provider, DunningCase.customer_id)
        .join(DunningCase, DunningCase.id == Notification.case_id)
        .where(*due)
        .order_by(Notification.run_at, Notification.id)
        .limit(1)
        .with_for_update(of=Notification, skip_locked=True)  # SQLite: no locking clause (one writer)
    ).first()
    if candidate is None:
        return None
    of_customer = (DunningCase.provider == candidate.provider, DunningCase.customer_id == candidate.customer_id)
    customer_cases = select(DunningCase.id).where(*of_customer).order_by(DunningCase.id)
    # One claim per customer at a time, taken without waiting (see the module docstring).
    locked = session.scalars(
        select(DunningCase).where(*of_customer).order_by(DunningCase.id).with_for_update(skip_locked=True)
    ).all()
    if session.get_bind().dialect.name == "postgresql" and [case.id for case in locked] != list(
        session.scalars(customer_cases)
    ):
        passed.add(candidate.id)
        return TAKEN  # another transaction holds one of the customer's cases: try again afresh
    token = str(uuid.uuid4())
    until = now + timedelta(seconds=lease_seconds)
    primary = session.scalars(
        update(Notification)
        .where(Notification.id == candidate.id, _due(now))  # re-checked: another worker may have it now
        .values(
            status=NotificationStatus.SENDING,
            claim_token=token,
            locked_until=until,
            attempts=Notification.attempts + 1,
        )
        .returning(Notification),
        execution_options={"synchronize_session": False},
    ).first()
    if primary is None:
        passed.add(candidate.id)
        return TAKEN
    open_cases = customer_cases.where(DunningCase.status == CaseStatus.OPEN)
    siblings = session.execute(
        update(Notification)
        .where(
            Notification.id != candidate.id,
            Notification.case_id.in_(open_cases),
            Notification.kind == candidate.kind,
            or_(
                and_(Notification.status == NotificationStatus.PENDING, Notification.run_at <= now + group_window),
                # sent along with a primary by a worker that died: they go out together again
                and_(Notification.status == NotificationStatus.SENDING, Notification.locked_until < now),
            ),
        )
        .values(status=NotificationStatus.SENDING, claim_token=token, locked_until=until)
        .returning(Notification.id),
        execution_options={"synchronize_session": False},
    ).all()
    [case] = [case for case in locked if case.id == primary.case_id]
    return Batch(
        Claim(primary.id, token, primary.attempts),
        tuple(sorted(row.id for row in siblings)),
        notification=primary,
        case=case,
    )
