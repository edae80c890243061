"""Putting stored events back in the queue (`webhook-app events replay`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from webhook_app.db import Database
from webhook_app.models import Event
from webhook_app.states import EventStatus


def requeue(
    db: Database, now: datetime, *, event_ids: tuple[str, ...] = (), failed: bool = False
) -> tuple[int, list[str]]:
    """Mark the named (or all failed) events pending again; returns (count, unknown ids)."""
    with db.session() as s:
        known = set(s.scalars(select(Event.event_id).where(Event.event_id.in_(event_ids)))) if event_ids else set()
        condition = Event.event_id.in_(known) if event_ids else Event.status == EventStatus.FAILED
        if event_ids and failed:
            condition = Event.event_id.in_(known) | (Event.status == EventStatus.FAILED)
        result = s.execute(
            update(Event)
            .where(condition, Event.status != EventStatus.PROCESSING)
            .values(status=EventStatus.PENDING, run_at=now, attempts=0, claim_token=None, locked_until=None)
        )
        count = cast(CursorResult[Any], result).rowcount
    return count, [e for e in event_ids if e not in known]
