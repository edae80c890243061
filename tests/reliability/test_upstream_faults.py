"""Upstream faults: stand-in Stripe and Loops fail 30% of requests (500s, 429s, and timeouts where the
work is still done) while 200 recovery messages go out; one customer Stripe no longer knows and one
address Loops refuses are permanent 4xx errors (their own requests carry no injected fault, so the
4xx is what the client sees). Every message must reach Loops exactly once; each permanent error must
stop after the one request that got it, with the reason kept; a validly signed
but unusable event shows its reason in `webhook-app events list`.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.reliability.support import Peek, figure
from tests.standins import Faults
from tests.waiting import wait_for
from webhook_app.models import DunningCase, Event, Notification

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

MESSAGES = int(os.environ.get("FAULT_MESSAGES", "200"))
HANG = 1.5  # a "timeout": the stand-in answers after this long...
TIMEOUT = 1.0  # ...and our clients give up after this long


def faults(seed: int) -> Faults:
    """30% of requests fail: 10% answered 500, 10% answered 429, 10% time out (but are served)."""
    return Faults(error_rate=0.10, throttle_rate=0.10, timeout_rate=0.10, hang_seconds=HANG, seed=seed)


def test_faulty_upstreams_send_every_message_once_and_stop_permanent_errors_after_one_attempt(stack, tmp_path):
    stack.start_standins(stripe_faults=faults(seed=11), loops_faults=faults(seed=13))
    invoices = [
        so.invoice(invoice_id=f"in_fault_{i:04d}", customer=f"cus_fault_{i:04d}", email=f"fault{i}@reliability.test")
        for i in range(MESSAGES)
    ]
    gone = so.invoice(invoice_id="in_fault_gone", customer="cus_missing_fault", email="gone@reliability.test")
    refused = so.invoice(invoice_id="in_fault_refused", customer="cus_fault_refused", email="refused@reliability.test")
    stack.loops.reject_emails.add(refused["customer_email"])
    for inv in (*invoices, gone, refused):
        stack.stripe.invoices[inv["id"]] = inv
    unusable = so.event("invoice.payment_failed", dict(so.invoice(invoice_id="in_fault_unusable"), customer=None))

    database_url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
    app = stack.web(database_url, STRIPE_TIMEOUT_SECONDS=TIMEOUT, HTTP_TIMEOUT_SECONDS=TIMEOUT)
    stack.worker(app, "faults", WORKER_CONCURRENCY=4)
    started = time.monotonic()
    with requests.Session() as session:
        for inv in (*invoices, gone, refused):
            body, headers = so.signed(so.event("invoice.payment_failed", inv), WEBHOOK_SECRET)
            assert session.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=10).status_code == 200
        body, headers = so.signed(unusable, WEBHOOK_SECRET)
        assert session.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=10).status_code == 200

    peek = Peek(database_url)
    try:
        wait_for(
            lambda: (
                peek.count(Notification, Notification.status == "sent") >= MESSAGES
                and peek.count(Notification, Notification.status == "failed") >= 2
            ),
            timeout=400,
            what=f"{MESSAGES} messages sent and 2 permanent failures recorded",
            interval=0.5,
        )
        seconds = time.monotonic() - started
        time.sleep(3.0)  # a permanent error retried by mistake would show up now
        notifications = peek.rows(Notification)
        cases = {c.id: c for c in peek.rows(DunningCase)}
        events = peek.by_status(Event)
    finally:
        peek.dispose()

    by_invoice = {cases[n.case_id].invoice_id: n for n in notifications}
    sent = [n for n in notifications if n.status == "sent"]
    per_invoice = Counter(m["body"]["dataVariables"]["invoiceId"] for m in stack.loops.messages)
    duplicates = sum(n - 1 for n in per_invoice.values())
    retries = sum(n.attempts for n in sent) - len(sent)

    # Every message went out once, whatever failed on the way.
    assert len(sent) == MESSAGES and set(per_invoice) == {inv["id"] for inv in invoices}
    assert duplicates == 0
    # Stripe's 400 resource_missing: one request got it, the notification failed, the case closed as error.
    missing = by_invoice["in_fault_gone"]
    assert stack.stripe.rejections == ["cus_missing_fault"], stack.stripe.rejections
    assert missing.status == "failed" and "resource_missing" in missing.last_error, missing.last_error
    assert cases[missing.case_id].status == "error" and cases[missing.case_id].close_reason
    # Loops' 400 for the address: one request got it; the reason is kept, without the address.
    rejected = by_invoice["in_fault_refused"]
    assert stack.loops.rejections == ["refused@reliability.test"], stack.loops.rejections
    assert rejected.status == "failed" and "HTTP 400" in rejected.last_error, rejected.last_error
    assert "refused@reliability.test" not in rejected.last_error
    # The unusable event is failed with its reason, and `webhook-app events list` shows it.
    listing = app.command("events", "list", "--status", "failed")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if unusable["id"] in line)
    assert "failed" in line and "BadPayload" in line and "customer" in line, line
    assert events.get("failed") == 1 and events.get("done") == MESSAGES + 2, events

    s_counts, l_counts = stack.stripe.faults.counts, stack.loops.faults.counts
    figure(
        "upstream faults",
        f"Stripe {sum(s_counts.values())} requests ({s_counts['500']} x 500, {s_counts['429']} x 429, "
        f"{s_counts['timeout']} timeouts), Loops {sum(l_counts.values())} requests ({l_counts['500']} x 500, "
        f"{l_counts['429']} x 429, {l_counts['timeout']} timeouts): {len(sent)}/{MESSAGES} messages sent, "
        f"{duplicates} duplicates, {retries} retried attempts (max {max(n.attempts for n in sent)} for one "
        f"message), {stack.loops.conflicts} timed-out sends recognised by Idempotency-Key (409) ({seconds:.0f}s)",
    )
    figure(
        "permanent 4xx",
        f"Stripe 400 resource_missing: 1 request, then stopped (notification failed: "
        f"{missing.last_error[:120]!r}); Loops 400: 1 request, then stopped ({rejected.last_error[:120]!r}); "
        f"`webhook-app events list --status failed`: {line.strip()[:160]!r}",
    )
