"""Claiming work from a table shared by many processes: the inbox and the notification outbox.

A claim marks a due row `processing`/`sending` with a lease and a fresh token, in one statement:
PostgreSQL picks rows with `FOR UPDATE SKIP LOCKED` so concurrent workers never take the same row;
SQLite has a single writer, so the UPDATE is atomic by itself. A worker that dies leaves its lease to
run out; the row is then claimable again. Finishing checks the token, so a worker whose lease was
taken over cannot overwrite the new owner's outcome.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Claim:
    """A claimed row: its id, the token proving ownership, and which attempt this is."""

    id: int
    token: str
    attempts: int


def due_rows(model: Any, now: datetime, ready: Collection[str], busy: str) -> ColumnElement[bool]:
    """Rows of `model` a claim may take now: ready and due, or abandoned by a crashed worker."""
    return or_(
        and_(model.status.in_(ready), model.run_at <= now),
        and_(model.status == busy, model.locked_until < now),
    )


def any_due(
    session: Session, model: Any, now: datetime, ready: Collection[str] = ("pending",), busy: str = "processing"
) -> bool:
    """Whether a claim would find a row now: a read, so an idle poll needs no write lock (SQLite)."""
    return session.execute(select(model.id).where(due_rows(model, now, ready, busy)).limit(1)).first() is not None


def claim(
    session: Session,
    model: Any,
    *,
    now: datetime,
    lease_seconds: float,
    limit: int,
    ready: tuple[str, ...] = ("pending",),
    busy: str = "processing",
) -> list[Claim]:
    """Claim up to `limit` due rows of `model`; commits nothing (the caller's transaction does)."""
    due = due_rows(model, now, ready, busy)
    # A materialized CTE, not `IN (subquery)`: PostgreSQL may re-run an IN-subquery with SKIP LOCKED
    # and so take more rows than LIMIT allows.
    candidates = (
        select(model.id)
        .where(due)
        .order_by(model.run_at, model.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("claimable")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    token = str(uuid.uuid4())
    stmt = (
        update(model)
        .where(model.id.in_(select(candidates.c.id)))
        .where(due)  # re-checked: a row may have been taken between the snapshot and the lock
        .values(
            status=busy,
            claim_token=token,
            locked_until=now + timedelta(seconds=lease_seconds),
            attempts=model.attempts + 1,
        )
        .returning(model.id, model.attempts)
    )
    return [
        Claim(row.id, token, row.attempts)
        for row in session.execute(stmt, execution_options={"synchronize_session": False})
    ]


def owned(model: Any, claim_: Claim) -> ColumnElement[bool]:
    """A WHERE clause matching the row only while this claim still owns it."""
    return and_(model.id == claim_.id, model.claim_token == claim_.token)


def finish(session: Session, model: Any, claim_: Claim, **values: Any) -> bool:
    """Record the outcome if we still own the row; False when the lease was taken over."""
    stmt = update(model).where(owned(model, claim_)).values(claim_token=None, locked_until=None, **values)
    result = session.execute(stmt, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result).rowcount == 1


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: base * 2**(attempts-1), capped, times U(0.5, 1)."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return float(delay * random.uniform(0.5, 1.0))
