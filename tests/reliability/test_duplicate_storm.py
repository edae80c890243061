"""Duplicate storm: 1,000 failed payments, each delivered 3 times at once, to gunicorn on PostgreSQL
with 4 worker processes. Stripe delivers at least once, so duplicates are normal; a customer must still
get exactly one message per failed invoice."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.reliability.support import Paced, Peek, figure
from tests.waiting import wait_for
from webhook_app.models import DunningCase, Event, Notification

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.postgres]

EVENTS = int(os.environ.get("STORM_EVENTS", "1000"))
COPIES = 3
WORKER_PROCESSES = 4
CLIENT_THREADS = 24  # a multiple of COPIES, so every event's copies are in flight together


def test_duplicate_storm_gives_one_case_and_one_message_per_invoice(stack, postgres_url):
    stack.start_standins()
    events = []
    for i in range(EVENTS):
        inv = so.invoice(
            invoice_id=f"in_storm_{i:05d}",
            customer=f"cus_storm_{i:05d}",
            email=f"storm{i}@reliability.test",
            attempt_count=1,
        )
        stack.stripe.invoices[inv["id"]] = inv
        events.append(so.event("invoice.payment_failed", inv, event_id=f"evt_storm_{i:05d}"))
    app = stack.web(postgres_url)
    for i in range(WORKER_PROCESSES):
        stack.worker(app, f"storm-{i}", WORKER_CONCURRENCY=4)

    # The three copies of an event wait for each other, then go out at the same instant.
    barriers = [threading.Barrier(COPIES, timeout=30) for _ in events]
    local = threading.local()
    answers: Counter = Counter()
    lock = threading.Lock()

    def deliver(task):
        index, _copy = task
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body, headers = so.signed(events[index], WEBHOOK_SECRET)
        with contextlib.suppress(threading.BrokenBarrierError):  # a late copy is a duplicate all the same
            barriers[index].wait()
        response = session.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=30)
        key = (
            response.status_code
            if response.status_code != 200
            else ("duplicate" if response.json().get("duplicate") else "stored")
        )
        with lock:
            answers[key] += 1

    started = time.monotonic()
    Paced(deliver, [(i, c) for i in range(EVENTS) for c in range(COPIES)], CLIENT_THREADS).start().join(timeout=300)
    intake_seconds = time.monotonic() - started

    peek = Peek(postgres_url)
    try:
        wait_for(
            lambda: (
                peek.count(Notification, Notification.status == "sent") >= EVENTS
                and peek.count(Event, Event.status == "done") >= EVENTS
            ),
            timeout=300,
            what=f"{EVENTS} events processed and {EVENTS} messages sent",
        )
        time.sleep(2.0)  # a late duplicate send would land now
        total_seconds = time.monotonic() - started
        cases = peek.count(DunningCase)
        events_stored = peek.count(Event)
        notifications = peek.by_status(Notification)
    finally:
        peek.dispose()

    messages = list(stack.loops.messages)
    per_invoice = Counter(m["body"]["dataVariables"]["invoiceId"] for m in messages)
    duplicates = sum(n - 1 for n in per_invoice.values())
    figure(
        "duplicate storm",
        f"{EVENTS} events x {COPIES} concurrent deliveries = {EVENTS * COPIES} requests "
        f"({answers['stored']} stored, {answers['duplicate']} acknowledged as duplicates, "
        f"{sum(v for k, v in answers.items() if k not in ('stored', 'duplicate'))} other) to gunicorn, "
        f"{WORKER_PROCESSES} worker processes on PostgreSQL: {cases} cases, {len(messages)} messages at Loops, "
        f"{duplicates} duplicates ({intake_seconds:.0f}s intake, {total_seconds:.0f}s to the last message)",
    )
    assert answers["stored"] == EVENTS and answers["duplicate"] == EVENTS * (COPIES - 1), answers
    assert events_stored == EVENTS
    assert cases == EVENTS
    # Only first messages are due now; a reminder the cadence schedules for later may wait as pending.
    assert notifications.get("sent") == EVENTS and set(notifications) <= {"sent", "pending"}, notifications
    assert len(messages) == EVENTS and len(per_invoice) == EVENTS
    assert duplicates == 0
