"""The inbox: every verified Stripe event, stored once (unique on its Stripe id)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite

from webhook_app.clock import from_unix
from webhook_app.db import Database
from webhook_app.models import Event

# Built once per (dialect, table, conflict columns), values passed as parameters: building the
# statement with `.values(**row)` on every call cost more CPU than the insert itself on the webhook
# path (benches/: about 0.5 ms of a 1.5 ms acknowledgement).
_INSERTS: dict[tuple, object] = {}


def insert_if_absent(conn, table, values: dict, index_elements: list[str]) -> bool:
    """INSERT that does nothing on a unique conflict (one statement, so no race with a twin).

    Returns whether a row was inserted. `conn` is a Connection or a Session.
    """
    dialect = conn.get_bind().dialect.name if hasattr(conn, "get_bind") else conn.dialect.name
    key = (dialect, table, tuple(index_elements))
    stmt = _INSERTS.get(key)
    if stmt is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = _INSERTS[key] = (
            insert(table).on_conflict_do_nothing(index_elements=index_elements).returning(*table.primary_key.columns)
        )
    return conn.execute(stmt, values).first() is not None


def event_row(event: dict, raw: str, now: datetime, ignored_reason: str | None = None) -> dict:
    """Column values for a verified event envelope."""
    return dict(
        stripe_id=event["id"],
        type=event["type"],
        livemode=event["livemode"],
        api_version=event.get("api_version"),
        stripe_created=from_unix(event["created"]),
        payload=raw,
        status="ignored" if ignored_reason else "pending",
        attempts=0,
        run_at=now,
        last_error=ignored_reason,
        received_at=now,
    )


def store(db: Database, event: dict, raw: str, now: datetime, ignored_reason: str | None = None) -> bool:
    """Insert the event; False when this event id was already stored (a duplicate delivery)."""
    with db.engine.begin() as conn:
        return insert_if_absent(conn, Event.__table__, event_row(event, raw, now, ignored_reason), ["stripe_id"])


def load_payload(row: Event) -> dict:
    """The stored event body as a dict."""
    return json.loads(row.payload)
