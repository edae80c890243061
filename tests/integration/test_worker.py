"""The worker on real SQLite and PostgreSQL: claims, leases, retries, and exactly-once effects."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import event, func, select

from tests.conftest import WEBHOOK_SECRET, base_config
from tests.fixtures import stripe_objects as so
from tests.fixtures.inbox import store_stripe
from tests.integration.test_recovery import first_message
from webhook_app import outbox, sending
from webhook_app.claims import claim
from webhook_app.errors import TransientError
from webhook_app.models import DunningCase, Event, Notification
from webhook_app.worker import Worker


def rows(svc, model):
    with svc.db.session() as s:
        return s.scalars(select(model).order_by(model.id)).all()


def test_failed_payment_event_is_processed_into_one_case_and_one_message(svc, deliver, billing, messenger):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    assert Worker(svc).run_once() == 2  # the event, then its notification
    [event] = rows(svc, Event)
    assert (event.status, event.attempts) == ("done", 1)
    [case] = rows(svc, DunningCase)
    assert (case.invoice_id, case.status, case.messages_sent) == (inv["id"], "open", 1)
    assert len(messenger.messages) == 1


def test_same_event_delivered_three_times_concurrently_is_processed_once(app, svc, billing, messenger):
    inv = so.invoice()
    billing.put(inv)
    body, headers = so.signed(so.event("invoice.payment_failed", inv), WEBHOOK_SECRET)
    threads = [
        threading.Thread(target=lambda: app.test_client().post("/webhooks/stripe", data=body, headers=headers))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Worker(svc).drain(threads=3)
    assert len(rows(svc, Event)) == 1 and len([n for n in rows(svc, Notification) if n.status == "sent"]) == 1
    assert len(messenger.messages) == 1


def test_unknown_event_type_is_marked_ignored(svc, deliver):
    deliver(so.event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}))
    Worker(svc).run_once()
    [event] = rows(svc, Event)
    assert event.status == "ignored" and "no handler" in event.last_error


def test_validly_signed_but_strange_payload_is_marked_failed_not_crashed(svc, deliver):
    deliver(so.event("invoice.payment_failed", {"id": 42, "object": "invoice"}))
    Worker(svc).run_once()
    [event] = rows(svc, Event)
    assert event.status == "failed" and "BadPayload" in event.last_error


def test_claim_abandoned_by_a_killed_worker_is_taken_over_after_the_lease(svc, deliver, clock, billing, messenger):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    with svc.db.session() as s:  # a worker claims the event, then dies before finishing it
        [dead] = claim(s, Event, now=clock.now(), lease_seconds=60, limit=10)
    assert Worker(svc).process_events() == 0  # still leased: nobody else may take it
    clock.advance(seconds=61)
    assert Worker(svc).process_events() == 1
    [event] = rows(svc, Event)
    assert (event.status, event.attempts) == ("done", 2)
    assert len(rows(svc, DunningCase)) == 1
    # The dead worker waking up cannot overwrite the new owner's outcome.
    from webhook_app.claims import finish

    with svc.db.session() as s:
        assert finish(s, Event, dead, status="failed") is False


def test_transient_send_failure_retries_with_backoff_then_sends_once(make_app, billing, messenger, clock):
    app = make_app(WORKER_RETRY_BASE_SECONDS=30)
    from webhook_app.services import services

    with app.app_context():
        svc = services()
    inv = so.invoice()
    billing.put(inv)
    body, headers = so.signed(so.event("invoice.payment_failed", inv), WEBHOOK_SECRET)
    app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    messenger.fail_with = TransientError("Loops answered 503")
    Worker(svc).run_once()
    n = first_message(svc)
    assert n.status == "pending" and n.attempts == 1 and "503" in n.last_error
    assert 15 <= (n.run_at - clock.now()).total_seconds() <= 30  # 30 s base, jittered down to half
    messenger.fail_with = None
    assert Worker(svc).run_once() == 0  # not due yet
    clock.advance(seconds=31)
    Worker(svc).run_once()
    n = first_message(svc)
    assert n.status == "sent" and len(messenger.messages) == 1


@pytest.mark.postgres
def test_two_worker_processes_on_postgresql_never_process_the_same_event_twice(postgres_url, tmp_path):
    from webhook_app import create_app, migrate
    from webhook_app.clock import utcnow
    from webhook_app.services import services

    config = base_config(postgres_url, STRIPE_SECRET_KEY="")  # no Stripe: messages are held, events processed
    app = create_app(config)
    with app.app_context():
        svc = services()
        migrate.upgrade(svc.db)
        for i in range(300):
            event = so.event("invoice.payment_failed", so.invoice(invoice_id=f"in_two_{i:04d}"))
            store_stripe(svc.db, event, utcnow())
    env = {**os.environ, **config, "WORKER_CONCURRENCY": "2", "LOG_LEVEL": "WARNING"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "webhook_app.cli", "worker", "--once"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    with svc.db.session() as s:
        statuses = dict(s.execute(select(Event.status, func.count()).group_by(Event.status)).all())
        max_attempts = s.scalar(select(func.max(Event.attempts)))
        cases = s.scalar(select(func.count(DunningCase.id)))
        notifications = s.scalar(select(func.count(Notification.id)).where(Notification.step == 0))
        held = s.scalar(
            select(func.count(Notification.id)).where(Notification.step == 0, Notification.status == "held")
        )
    assert statuses == {"done": 300}
    assert held == 300  # one customer's messages wait together until STRIPE_SECRET_KEY is set
    assert max_attempts == 1  # no event was ever claimed twice
    assert cases == notifications == 300
    svc.db.dispose()


def test_a_busy_worker_looks_for_events_once_per_poll_interval_unless_a_delivery_arrives(svc, deliver, billing, clock):
    looks: list[str] = []

    def count_event_looks(_conn, _cursor, statement, *_args):
        if "events" in statement.split("WHERE")[0]:  # a read or a claim of the inbox table
            looks.append(statement)

    event.listen(svc.db.engine, "before_cursor_execute", count_event_looks)
    worker = Worker(svc)  # WORKER_POLL_SECONDS: 1
    assert worker.pass_once() == 0 and looks  # nothing due: it looked, and found none
    looks.clear()
    worker.pass_once()
    assert looks == []  # a pass right after (a thread between two sends) does not look again

    inv = so.invoice()
    billing.put(inv)
    store_stripe(svc.db, so.event("invoice.payment_failed", inv), clock.now())  # stored by another process
    assert worker.pass_once() == 0  # found at the next poll, as an idle worker's poll would
    clock.advance(seconds=1)
    assert worker.pass_once() >= 1
    assert [e.status for e in rows(svc, Event)] == ["done"]

    worker.pass_once()  # nothing due again
    second = so.invoice()
    billing.put(second)
    assert deliver(so.event("invoice.payment_failed", second)).status_code == 200  # this process stored it
    assert worker.pass_once() >= 1  # at once: the embedded worker's intake counts its deliveries
    assert [e.status for e in rows(svc, Event)] == ["done", "done"]


def test_a_message_claimed_with_its_rows_and_one_claimed_without_are_sent_alike(
    svc, deliver, billing, messenger, clock
):
    for number in (1, 2):
        inv = so.invoice(invoice_id=f"in_rows_{number}", customer=f"cus_rows_{number}")
        billing.put(inv)
        assert deliver(so.event("invoice.payment_failed", inv)).status_code == 200
    Worker(svc).process_events()
    with_rows = outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60)
    claimed = outbox.claim_next(svc.db, now=clock.now(), lease_seconds=60)
    assert with_rows is not None and with_rows.notification is not None and with_rows.case is not None
    assert claimed is not None
    without_rows = outbox.Batch(claimed.claim, claimed.sibling_ids)  # as a batch made elsewhere arrives

    for batch in (with_rows, without_rows):
        assert sending.send_notification(svc, batch).status == "sent"
    assert sorted(m.data_variables()["invoiceId"] for m in messenger.messages) == ["in_rows_1", "in_rows_2"]
    assert {n.status for n in rows(svc, Notification) if n.step == 0} == {"sent"}
