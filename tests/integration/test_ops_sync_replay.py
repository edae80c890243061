"""`webhook-app events sync` (catch-up from Stripe's event list) and `events replay`, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.fixtures import stripe_objects as so
from tests.fixtures.inbox import store_stripe
from tests.integration.ops_env import open_ops_env
from webhook_app.clock import from_unix
from webhook_app.models import DunningCase, Event, Notification
from webhook_app.providers.stripe.sync import sync_events
from webhook_app.providers.stripe.translate import TRANSLATORS as HANDLERS
from webhook_app.worker import Worker


@pytest.fixture
def env(database_url, clock):
    environment, close = open_ops_env(database_url, clock, MESSAGING_PROVIDER="console")
    yield environment
    close()


def unix(clock, **delta) -> int:
    return int((clock.now() + timedelta(**delta) - from_unix(0)).total_seconds())


def stored(env) -> dict[str, str]:
    with env.svc.db.session() as s:
        return dict(s.execute(select(Event.event_id, Event.status)).all())


def failed_event(clock, event_id: str, invoice_id: str, delivered: bool = False, days_ago: float = 1) -> dict:
    event = so.event(
        "invoice.payment_failed",
        so.invoice(invoice_id=invoice_id, customer=f"cus_{invoice_id}"),
        event_id=event_id,
        created=unix(clock, days=-days_ago),
    )
    return {**event, "_delivered": delivered}


def test_sync_inserts_only_the_undelivered_events_missing_from_the_inbox(env, clock):
    already = failed_event(clock, "evt_already", "in_a")
    body = {k: v for k, v in already.items() if k != "_delivered"}
    store_stripe(env.svc.db, body, clock.now())  # the webhook delivered this one
    env.stripe.events = [
        already,
        failed_event(clock, "evt_missed_1", "in_b"),
        failed_event(clock, "evt_missed_2", "in_c"),
        failed_event(clock, "evt_delivered", "in_d", delivered=True),  # Stripe delivered it: not listed
        {
            **so.event("customer.created", {"id": "cus_x", "object": "customer"}, event_id="evt_unhandled"),
            "_delivered": False,
        },  # a type the app does not handle
    ]

    first = env.cli("events", "sync")

    assert first.exit_code == 0, first.output
    assert "listed 3 event(s) from Stripe: 2 missing and now queued, 1 already in the inbox" in first.output
    assert stored(env) == {"evt_already": "pending", "evt_missed_1": "pending", "evt_missed_2": "pending"}
    [(_, _, params)] = [r for r in env.stripe.requests if r[1] == "/v1/events"]
    assert params["delivery_success"] == "false" and "created" not in params
    assert sorted(params["types"]) == sorted(HANDLERS)

    again = env.cli("events", "sync")
    assert "0 missing and now queued, 3 already in the inbox" in again.output

    # The worker processes what sync queued exactly as if the webhook had delivered it.
    Worker(env.svc).run_once()
    with env.svc.db.session() as s:
        assert sorted(s.scalars(select(DunningCase.invoice_id))) == ["in_a", "in_b", "in_c"]


def test_sync_since_a_date_also_fetches_delivered_events_of_handled_types(env, clock):
    env.stripe.events = [
        failed_event(clock, "evt_recent_delivered", "in_r", delivered=True, days_ago=1),
        failed_event(clock, "evt_old_delivered", "in_o", delivered=True, days_ago=5),
    ]
    since = (clock.now() - timedelta(days=2)).strftime("%Y-%m-%d")

    result = env.cli("events", "sync", "--since", since)

    assert result.exit_code == 0, result.output
    assert stored(env) == {"evt_recent_delivered": "pending"}
    created = [p["created"] for _, path, p in env.stripe.requests if path == "/v1/events" and "created" in p]
    midnight = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
    assert created == [{"gte": str(int(midnight.timestamp()))}]


def test_sync_pages_through_every_undelivered_event(env, clock):
    env.stripe.events = [failed_event(clock, f"evt_{n:04d}", f"in_{n:04d}") for n in range(230)]

    result = env.cli("events", "sync")

    assert "230 missing and now queued" in result.output
    assert len(stored(env)) == 230
    assert len([r for r in env.stripe.requests if r[1] == "/v1/events"]) == 3


def test_sync_absorbs_429s(env, clock):
    env.stripe.events = [failed_event(clock, f"evt_{n:04d}", f"in_{n:04d}") for n in range(120)]
    env.stripe.throttle["/v1/events"] = 2
    pacer = env.svc.provider("stripe").admin.api.pacer  # Stripe's one rate limit in this process
    pacer.backoff_max = 0.005  # Stripe's 429 asks for seconds; the test has no need to wait them

    result = sync_events(env.svc)

    assert result.inserted == 120 and pacer.throttled == 2
    assert len(stored(env)) == 120


def test_replay_reruns_stored_events_without_a_second_effect(env, clock):
    event = failed_event(clock, "evt_replayed", "in_replay")
    event.pop("_delivered")
    store_stripe(env.svc.db, event, clock.now())
    Worker(env.svc).process_events()

    replay = env.cli("events", "replay", "evt_replayed")
    assert replay.exit_code == 0 and "queued 1 event(s)" in replay.output
    assert stored(env) == {"evt_replayed": "pending"}
    Worker(env.svc).process_events()

    assert stored(env) == {"evt_replayed": "done"}
    with env.svc.db.session() as s:
        assert len(s.scalars(select(DunningCase)).all()) == 1
        assert len(s.scalars(select(Notification).where(Notification.step == 0)).all()) == 1

    unknown = env.cli("events", "replay", "evt_nope")
    assert unknown.exit_code == 1 and "unknown event id: evt_nope" in unknown.output
