"""This deployment's id: made once per database (insert-or-nothing), read once per process.

Idempotency keys sent to email tools carry it (`sending.idempotency_key`). Notification ids start at
1 in every database, so without it staging and production sharing one Loops team would send the same
key for their first message, and Loops, which refuses a key it saw in the last 24 hours, would
swallow the second deployment's message as a duplicate.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from webhook_app.db import Database
from webhook_app.models import Deployment
from webhook_app.sql import insert_if_absent

ROW_ID = 1


def deployment_id(db: Database, now: datetime) -> str:
    """The deployment's id, creating it on first use (two processes racing both read the winner's)."""
    with db.session() as s:
        current = s.scalar(select(Deployment.deployment_id).where(Deployment.id == ROW_ID))
        if current:
            return current
        candidate = uuid.uuid4().hex[:16]
        insert_if_absent(s, Deployment.__table__, {"id": ROW_ID, "deployment_id": candidate, "created_at": now}, ["id"])
        stored = s.scalar(select(Deployment.deployment_id).where(Deployment.id == ROW_ID))
        assert stored is not None  # inserted now or by the twin that won the race
        return stored
