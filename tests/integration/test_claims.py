"""Claims take at most `limit` rows, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from tests.fixtures import stripe_objects as so
from tests.fixtures.inbox import store_stripe
from webhook_app.claims import claim
from webhook_app.models import Event


def test_a_claim_never_takes_more_rows_than_its_limit(svc, clock):
    for _ in range(25):
        event = so.event("invoice.payment_failed", so.invoice())
        store_stripe(svc.db, event, clock.now())
    sizes = []
    for _ in range(6):
        with svc.db.session() as s:
            sizes.append(len(claim(s, Event, now=clock.now(), lease_seconds=60, limit=5)))
    assert sizes == [5, 5, 5, 5, 5, 0]
