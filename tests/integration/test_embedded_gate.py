"""The embedded worker narrows to one thread while its web process acknowledges a burst, and until the
burst has been over for a while; it hands back what it had claimed instead of sitting on it."""

from __future__ import annotations

import time

from sqlalchemy import select

from tests.fixtures import stripe_objects as so
from webhook_app.embedded import SAMPLE_SECONDS, BurstGate
from webhook_app.models import Event
from webhook_app.worker import Worker


def test_the_gate_holds_back_all_but_one_thread_during_a_burst_and_a_while_after_it(svc):
    quiet = 4 * SAMPLE_SECONDS
    gate = BurstGate(svc, threshold=20, quiet_seconds=quiet)
    assert gate(0) and not gate(3)  # started narrowed: a start may meet a burst's backlog
    time.sleep(SAMPLE_SECONDS + 0.05)
    assert gate(0) and not gate(3)  # one quiet sample is not yet a quiet spell
    time.sleep(quiet - SAMPLE_SECONDS + 0.05)
    assert gate(0) and gate(3)  # quiet for `quiet_seconds`: every thread works
    for _ in range(100):  # 100 deliveries in well under a second: a burst
        svc.wake_worker()
    time.sleep(SAMPLE_SECONDS + 0.05)
    assert gate(0) and not gate(1) and not gate(7)
    time.sleep(SAMPLE_SECONDS + 0.05)  # nothing arrived since: a lull, which may be between two waves
    assert not gate(1) and not gate(7)
    time.sleep(quiet)  # the burst has been over for `quiet_seconds`
    assert gate(1) and gate(7)


def test_a_held_back_thread_hands_back_the_events_it_claimed(svc, deliver, billing):
    for n in range(3):
        inv = so.invoice(invoice_id=f"in_gate_{n}", customer=f"cus_gate_{n}")
        billing.put(inv)
        assert deliver(so.event("invoice.payment_failed", inv)).status_code == 200
    worker = Worker(svc)
    worker.admit = lambda index: index == 0
    assert worker.process_events(index=2) == 3  # claimed three, did one, handed two back
    with svc.db.session() as s:
        rows = s.scalars(select(Event).order_by(Event.id)).all()
    assert [(e.status, e.attempts, e.claim_token) for e in rows] == [
        ("done", 1, None),
        ("pending", 0, None),
        ("pending", 0, None),
    ]
    assert worker.process_events(index=0) == 2  # thread 0 takes them at once, no lease to wait out
