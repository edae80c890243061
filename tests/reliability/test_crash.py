"""Crash: the worker process is SIGKILLed three times while 500 failed payments arrive and are sent.

Each kill lands in the worst window: right after Loops accepted a message and before the worker
recorded it as sent. Nothing may be lost (abandoned claims are retaken when their lease runs out) and
no customer may get a message twice (the retried send carries the same Idempotency-Key; Loops answers
409 and the worker records the message as sent).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.reliability.support import Paced, Peek, figure
from tests.standins import Faults
from webhook_app.models import DunningCase, Event, Notification

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.postgres]

EVENTS = int(os.environ.get("CRASH_EVENTS", "500"))
KILL_AT = [EVENTS // 5, EVENTS // 2, EVENTS * 4 // 5]  # messages accepted by Loops when the worker dies
LEASE_SECONDS = 3  # how long an abandoned claim waits before another worker may take it


def test_worker_killed_three_times_loses_nothing_and_sends_nothing_twice(stack, postgres_url):
    # A little latency at Loops keeps several sends in flight when a kill lands.
    stack.start_standins(loops_faults=Faults(latency=0.02))
    events = []
    for i in range(EVENTS):
        inv = so.invoice(
            invoice_id=f"in_crash_{i:05d}", customer=f"cus_crash_{i:05d}", email=f"crash{i}@reliability.test"
        )
        stack.stripe.invoices[inv["id"]] = inv
        events.append(so.event("invoice.payment_failed", inv, event_id=f"evt_crash_{i:05d}"))
    app = stack.web(postgres_url)
    env = {"WORKER_LEASE_SECONDS": LEASE_SECONDS, "WORKER_CONCURRENCY": 4}
    current = {"worker": stack.worker(app, "crash-0", **env)}
    pending_kills = list(KILL_AT)
    kills: list[int] = []
    lock = threading.Lock()

    def kill_between_sent_and_recorded(_message):
        with lock:
            accepted = len(stack.loops.messages)
            if not pending_kills or accepted < pending_kills[0]:
                return
            pending_kills.pop(0)
            worker = current["worker"]
            if worker.alive():
                os.kill(worker.pid, signal.SIGKILL)
                kills.append(accepted)

    stack.loops.after_accept = kill_between_sent_and_recorded

    answers: Counter = Counter()
    local = threading.local()

    def deliver(event):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body, headers = so.signed(event, WEBHOOK_SECRET)
        status = session.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=30).status_code
        with lock:
            answers[status] += 1

    started = time.monotonic()
    clients = Paced(deliver, events, threads=4).start()
    peek = Peek(postgres_url)
    restarts = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            worker = current["worker"]
            if not worker.alive():
                worker.stop()
                restarts += 1
                assert restarts <= len(KILL_AT), "the worker died more often than it was killed"
                current["worker"] = stack.worker(app, f"crash-{restarts}", **env)
            done = peek.count(Event, Event.status == "done")
            sent = peek.count(Notification, Notification.status == "sent")
            if done >= EVENTS and sent >= EVENTS and not pending_kills:
                break
            time.sleep(0.2)
        clients.join(timeout=60)
        time.sleep(LEASE_SECONDS + 1.0)  # any claim still abandoned would be retaken (and re-sent) now
        events_by_status = peek.by_status(Event)
        notifications = peek.by_status(Notification)
        cases = peek.count(DunningCase)
    finally:
        peek.dispose()
    seconds = time.monotonic() - started

    messages = list(stack.loops.messages)
    per_invoice = Counter(m["body"]["dataVariables"]["invoiceId"] for m in messages)
    duplicates = sum(n - 1 for n in per_invoice.values())
    lost = EVENTS - events_by_status.get("done", 0)
    figure(
        "crash",
        f"{EVENTS} events, worker SIGKILLed {len(kills)} times (after Loops accepted message "
        f"{', '.join(map(str, kills))}, before the worker recorded it), {restarts} restarts: "
        f"{events_by_status.get('done', 0)}/{EVENTS} events processed, {lost} lost, {cases} cases, "
        f"{len(messages)} messages at Loops, {duplicates} duplicates, {stack.loops.conflicts} re-sends "
        f"absorbed by their Idempotency-Key (409) ({seconds:.0f}s)",
    )
    assert answers == {200: EVENTS}, answers
    assert len(kills) == len(KILL_AT) and restarts == len(KILL_AT)
    assert events_by_status == {"done": EVENTS}, events_by_status
    assert cases == EVENTS
    assert notifications.get("sent") == EVENTS and set(notifications) <= {"sent", "pending"}, notifications
    assert len(messages) == EVENTS and len(per_invoice) == EVENTS and duplicates == 0
    # Each kill left one accepted-but-unrecorded message; its retry must have hit the idempotency key.
    assert stack.loops.conflicts >= len(KILL_AT)
