"""The inbox: every verified delivery, stored once (unique on provider + event id)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from webhook_app import inbox_writer
from webhook_app.db import Database
from webhook_app.models import Event
from webhook_app.providers.base import IncomingEvent, StoredEvent
from webhook_app.states import EventStatus


def event_row(provider: str, event: IncomingEvent, now: datetime) -> dict[str, Any]:
    """Column values for a verified delivery."""
    return dict(
        provider=provider,
        event_id=event.event_id,
        type=event.type,
        livemode=event.livemode,
        api_version=event.api_version,
        occurred_at=event.occurred_at,
        payload=event.payload,
        status=EventStatus.IGNORED if event.ignored_reason else EventStatus.PENDING,
        attempts=0,
        run_at=now,
        last_error=event.ignored_reason,
        received_at=now,
    )


def store(db: Database, provider: str, event: IncomingEvent, now: datetime) -> bool:
    """Insert the event; False when this provider's event id was already stored (a duplicate delivery).

    Every acknowledged delivery runs this: it goes through the inbox writer's direct path with group
    commit (`webhook_app.inbox_writer`), and returns once the row is committed.
    """
    return inbox_writer.writer(db).store(event_row(provider, event, now))


def stored_event(row: Event) -> StoredEvent:
    """The stored row as its translator receives it."""
    return StoredEvent(
        provider=row.provider,
        event_id=row.event_id,
        type=row.type,
        livemode=row.livemode,
        api_version=row.api_version,
        occurred_at=row.occurred_at,
        payload=json.loads(row.payload),
    )
