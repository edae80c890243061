"""Concurrent outbox claims on PostgreSQL: claimers pass over each other's rows instead of queueing
on them, and a customer's due messages still go out as one (webhook_app/outbox.py)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from webhook_app import dunning, outbox
from webhook_app.clock import from_unix
from webhook_app.models import DunningCase, Notification
from webhook_app.outbox import Batch
from webhook_app.worker import Worker

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url):
    """Row locks are what these tests are about: PostgreSQL only (SQLite has one writer)."""
    return postgres_url


def fail(app, svc, billing, clock, invoice_id: str, customer: str) -> None:
    """Invoice `invoice_id` of `customer` failed now; its event is handled (messages queued, not sent)."""
    inv = so.invoice(invoice_id=invoice_id, customer=customer)
    billing.put(inv)
    created = int((clock.now() - from_unix(0)).total_seconds())
    body, headers = so.signed(so.event("invoice.payment_failed", inv, created=created), WEBHOOK_SECRET)
    assert app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    Worker(svc).process_events()


def invoices(svc, batch: Batch | None) -> set[str]:
    """The invoices a claimed batch (primary and siblings) would message about."""
    assert batch is not None
    ids = [batch.claim.id, *batch.sibling_ids]
    with svc.db.reading() as s:
        return set(
            s.scalars(
                select(DunningCase.invoice_id)
                .join(Notification, Notification.case_id == DunningCase.id)
                .where(Notification.id.in_(ids))
            )
        )


def claim_beside(svc, clock) -> Batch | None:
    """`claim_next` on another thread and connection; fails the test if it waits on a lock."""
    found: list[Batch | None] = []
    thread = threading.Thread(target=lambda: found.append(outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60)))
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the second claimer waited on the first one's locks"
    return found[0]


def test_a_second_claimer_takes_another_customer_while_the_first_claim_is_in_flight(app, svc, billing, clock):
    fail(app, svc, billing, clock, "in_a", "cus_A")
    fail(app, svc, billing, clock, "in_b", "cus_B")
    with svc.db.session() as first:  # not committed until the second claimer is done
        in_flight = outbox.claim_batch(first, now=clock.now(), lease_seconds=60)
        beside = claim_beside(svc, clock)
    assert invoices(svc, in_flight) == {"in_a"}  # the oldest due
    assert invoices(svc, beside) == {"in_b"}  # passed over in_a's locked row instead of waiting for it
    assert outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60) is None


def test_a_customers_messages_claimed_by_one_worker_are_not_split_by_another(app, svc, billing, clock):
    fail(app, svc, billing, clock, "in_1", "cus_A")
    fail(app, svc, billing, clock, "in_2", "cus_A")
    with svc.db.session() as first:
        in_flight = outbox.claim_batch(first, now=clock.now(), lease_seconds=60)
        assert claim_beside(svc, clock) is None  # both of the customer's rows are being claimed
    assert invoices(svc, in_flight) == {"in_1", "in_2"}  # one message for both invoices
    assert outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60) is None


def test_a_claimer_looks_past_a_customer_whose_case_an_event_holds_then_claims_it_whole(app, svc, billing, clock):
    fail(app, svc, billing, clock, "in_1", "cus_A")
    fail(app, svc, billing, clock, "in_2", "cus_A")
    fail(app, svc, billing, clock, "in_3", "cus_B")
    with svc.db.session() as handler:  # an event of cus_A being handled holds one of its cases
        assert dunning.lock_case(handler, "stripe", "in_2") is not None
        beside = claim_beside(svc, clock)
    assert invoices(svc, beside) == {"in_3"}  # cus_A's rows are older, but its claim would have waited
    later = outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60)
    assert invoices(svc, later) == {"in_1", "in_2"}
