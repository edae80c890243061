"""Hostile input at the webhook: a generated corpus of malformed deliveries, on SQLite and PostgreSQL.

What must hold for every delivery: never a 5xx (Stripe retries those for days), nothing stored unless
validly signed, and a validly signed but strange event never stops the worker: it ends `done`,
`ignored`, or `failed` with the reason kept.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.fixtures.hostile import IGNORE, REJECT, STORE, Delivery, corpus
from tests.reliability.support import figure
from webhook_app.models import Event
from webhook_app.worker import Worker

pytestmark = pytest.mark.reliability
MAX_WORKER_PASSES = 50  # bounds the drain loop; a healthy run needs a handful


def post(client, d: Delivery):
    """Send one corpus delivery exactly as given (method, raw body, headers)."""
    headers = dict(d.headers)
    if d.content_type:
        headers["Content-Type"] = d.content_type
    return client.open("/webhooks/stripe", method=d.method, data=d.body, headers=headers)


def drain(svc) -> int:
    """Process every due inbox event (not the outbox: sending is the upstream scenarios' subject)."""
    worker = Worker(svc)
    total = 0
    for _ in range(MAX_WORKER_PASSES):
        handled = worker.process_events()
        total += handled
        if handled == 0:
            return total
    raise AssertionError(f"the worker still had events after {MAX_WORKER_PASSES} passes")


def stored_events(svc) -> dict[str, Event]:
    with svc.db.session() as s:
        return {e.event_id: e for e in s.scalars(select(Event))}


def test_corpus_has_at_least_200_malformed_deliveries():
    deliveries = corpus(WEBHOOK_SECRET)
    assert len(deliveries) >= 200
    assert len({d.name for d in deliveries}) == len(deliveries), "case names must be unique"
    kinds = Counter(d.name.split(":")[0].split(" ")[0] for d in deliveries)
    assert {
        "bad",
        "timestamp",
        "replayed",
        "truncated",
        "non-UTF-8",
        "envelope",
        "invoice",
        "huge",
        "unknown",
        "live-mode",
        "method",
    } <= set(kinds)


def test_hostile_deliveries_never_get_a_5xx_and_only_validly_signed_events_are_stored(app, svc, database_url):
    client = app.test_client()
    deliveries = corpus(WEBHOOK_SECRET, limit=svc.settings.max_body_bytes)
    wrong: list[str] = []
    statuses = Counter()
    answered_200: set[str] = set()
    for d in deliveries:
        response = post(client, d)
        status = response.status_code
        statuses[status // 100 * 100] += 1
        if status >= 500:
            wrong.append(f"{d.name}: {status} (5xx)")
        elif d.expect == REJECT and not 400 <= status < 500:
            wrong.append(f"{d.name}: expected a 4xx refusal, got {status}")
        elif d.expect in (STORE, IGNORE) and status != 200:
            wrong.append(f"{d.name}: expected 200 stored, got {status} {response.get_data(as_text=True)[:120]}")
        if status == 200:
            answered_200.add(d.event_id)
    assert not wrong, f"{len(wrong)} deliveries mishandled:\n" + "\n".join(wrong)

    stored = stored_events(svc)
    signed_ids = {d.event_id for d in deliveries if d.signed and d.expect != REJECT}
    assert set(stored) == answered_200, "a 200 must mean stored, and only a 200"
    assert set(stored) <= signed_ids, f"stored without a valid signature: {sorted(set(stored) - signed_ids)}"
    for d in deliveries:
        if d.expect == IGNORE:
            assert stored[d.event_id].status == "ignored" and "livemode" in stored[d.event_id].last_error

    # The worker on every stored event: finished, with a reason whenever it did not succeed.
    drain(svc)
    # ...and it still works afterwards: a normal event behind all the strange ones is processed.
    good = so.event("invoice.payment_failed", so.invoice(email="after-hostile@example.test"))
    body, headers = so.signed(good, WEBHOOK_SECRET)
    assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    drain(svc)
    events = stored_events(svc)
    assert events[good["id"]].status == "done"
    outcomes = Counter(e.status for e in events.values())
    stuck = [e.event_id for e in events.values() if e.status not in ("done", "ignored", "failed")]
    silent = [e.event_id for e in events.values() if e.status == "failed" and not e.last_error]
    assert not stuck, f"events left unfinished: {stuck[:10]}"
    assert not silent, f"events failed without a reason: {silent[:10]}"
    unknown = [e for e in events.values() if e.type not in ("invoice.payment_failed",) and e.status != "ignored"]
    assert not [
        e.event_id
        for e in unknown
        if e.event_id in {d.event_id for d in deliveries if d.name.startswith("unknown type")}
    ], "an event type without a handler must be marked ignored"
    classified = sum(1 for e in events.values() if e.status == "failed" and e.last_error.startswith("BadPayload"))
    unclassified = outcomes["failed"] - classified
    # Strange but signed is the sender's fault, not ours: BadPayload, never reported as a crash.
    assert unclassified == 0, [
        e.last_error for e in events.values() if e.status == "failed" and not e.last_error.startswith("BadPayload")
    ][:10]

    dialect = svc.db.dialect
    signed = sum(1 for d in deliveries if d.signed)
    figure(
        f"hostile input ({dialect})",
        f"{len(deliveries)} malformed deliveries ({signed} validly signed), 0 answered 5xx "
        f"({statuses[200]} x 2xx, {statuses[400]} x 4xx), {len(stored)} stored, 0 stored without a valid "
        f"signature; worker: {outcomes['done']} done, {outcomes['ignored']} ignored, {outcomes['failed']} failed "
        f"with a reason ({classified} as BadPayload, {unclassified} as unexpected errors), 0 stuck",
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("customer_email", "\ud800"),
        ("number", "\ud800"),
        ("customer_name", "nul\x00byte"),
        ("amount_due", 10**30),
        ("next_payment_attempt", 10**30),
        ("status_transitions", {"paid_at": -5}),
    ],
)
def test_unstorable_invoice_values_are_refused_as_bad_payload(svc, deliver, field, value):
    event = so.event("invoice.payment_failed", so.invoice(**{field: value}))
    assert deliver(event).status_code == 200
    drain(svc)
    row = stored_events(svc)[event["id"]]
    assert row.status == "failed" and row.last_error.startswith("BadPayload"), row.last_error
