"""The inbox: every verified delivery, stored once (unique on provider + event id)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from webhook_app.db import Database
from webhook_app.models import Event
from webhook_app.providers.base import IncomingEvent, StoredEvent
from webhook_app.states import EventStatus

EVENT_COLUMNS = (
    "provider",
    "event_id",
    "type",
    "livemode",
    "api_version",
    "occurred_at",
    "payload",
    "status",
    "attempts",
    "run_at",
    "last_error",
    "received_at",
)


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

    Every acknowledged delivery runs this, so it takes the direct path: one prepared INSERT ... ON
    CONFLICT DO NOTHING on the pooled DB-API connection, in its own transaction. Through SQLAlchemy's
    Connection the same insert cost more CPU than the rest of the acknowledgement together
    (docs/performance.md); the values still pass through the columns' own bind processors, so a row
    stored here is the row the ORM would have stored.
    """
    statement = _insert_statement(db.engine.dialect)
    values = event_row(provider, event, now)
    params = tuple(process(values[name]) if process else values[name] for name, process in statement.columns)
    raw = db.engine.raw_connection()  # the pool's checkout: pre-ping and reconnects as for any query
    cursor = raw.cursor()
    try:
        if statement.sqlite:
            cursor.execute("BEGIN IMMEDIATE")  # the write lock up front, as every write here (db.py)
        cursor.execute(statement.sql, params)
        inserted = cursor.rowcount == 1
        raw.commit()
        return inserted
    except db.engine.dialect.loaded_dbapi.Error as exc:
        _rollback(raw)
        if db.engine.dialect.is_disconnect(exc, raw.dbapi_connection, cursor):
            raw.invalidate(exc)  # not back into the pool: the next checkout reconnects
        raise DBAPIError.instance(
            statement.sql, params, exc, db.engine.dialect.loaded_dbapi.Error, dialect=db.engine.dialect
        ) from exc
    finally:
        cursor.close()
        raw.close()  # back to the pool


@dataclass(frozen=True)
class _Insert:
    sql: str
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # (name, bind processor) in order
    sqlite: bool


_INSERTS: dict[str, _Insert] = {}


def _insert_statement(dialect: Dialect) -> _Insert:
    """The inbox INSERT for `dialect`, built once: its SQL text and each column's bind processor."""
    found = _INSERTS.get(dialect.name)
    if found is None:
        table = cast(Table, Event.__table__)  # a model's __table__ is a Table
        names = tuple(EVENT_COLUMNS)
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(marker for _ in names)}) "
            "ON CONFLICT (provider, event_id) DO NOTHING"
        )
        processors = tuple((name, table.c[name].type.bind_processor(dialect)) for name in names)
        found = _INSERTS[dialect.name] = _Insert(sql, processors, dialect.name == "sqlite")
    return found


def _rollback(raw: Any) -> None:
    # A connection that is gone has nothing to roll back, and the first error is the one to report.
    with contextlib.suppress(Exception):
        raw.rollback()


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
