"""DUNNING_GROUP_WINDOW_SECONDS: invoices of one customer that fail together go out in one message.

The first message of a failure episode waits the window; the outbox sends a customer's messages due
within it together. A frozen clock drives time, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from webhook_app.clock import from_unix
from webhook_app.config import load_settings
from webhook_app.models import Notification
from webhook_app.services import services
from webhook_app.worker import Worker


def deliver(app, event: dict) -> None:
    body, headers = so.signed(event, WEBHOOK_SECRET)
    assert app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 200


def fail(app, billing, clock, invoice_id: str, customer: str = "cus_A", amount: int = 4900) -> dict:
    """Invoice `invoice_id` of `customer` failed now (the clock's now)."""
    inv = so.invoice(invoice_id=invoice_id, customer=customer, amount_due=amount)
    billing.put(inv)
    created = int((clock.now() - from_unix(0)).total_seconds())
    deliver(app, so.event("invoice.payment_failed", inv, created=created))
    drain(app)  # the worker takes the event at once, as it does within a second in production
    return inv


def drain(app) -> int:
    with app.app_context():
        return Worker(services()).run_once()


def first_messages(app) -> list[Notification]:
    with app.app_context(), services().db.session() as s:
        return s.scalars(select(Notification).where(Notification.step == 0).order_by(Notification.id)).all()


def test_two_invoices_failing_two_seconds_apart_go_in_one_message(make_app, billing, messenger, clock):
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=5)
    fail(app, billing, clock, "in_first", amount=4900)
    drain(app)
    clock.advance(seconds=2)
    fail(app, billing, clock, "in_second", amount=1500)
    drain(app)
    assert messenger.messages == []  # the first failure's message is still waiting out the window

    clock.advance(seconds=3)  # the first message is due; the second is within the window of it
    drain(app)

    [message] = messenger.messages
    data = message.data_variables()
    assert data["invoiceCount"] == 2
    assert {line["invoiceId"] for line in data["invoices"]} == {"in_first", "in_second"}
    assert {n.status for n in first_messages(app)} == {"sent"}
    clock.advance(seconds=10)
    drain(app)
    assert len(messenger.messages) == 1  # the second invoice's first message went with the first


def test_an_invoice_failing_after_the_message_went_gets_its_own(make_app, billing, messenger, clock):
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=5)
    fail(app, billing, clock, "in_first")
    clock.advance(seconds=5)
    drain(app)
    assert len(messenger.messages) == 1
    clock.advance(seconds=60)
    fail(app, billing, clock, "in_later")
    drain(app)
    assert len(messenger.messages) == 1
    clock.advance(seconds=5)
    drain(app)
    assert [m.invoice.invoice_id for m in messenger.messages] == ["in_first", "in_later"]
    assert messenger.messages[1].other_invoices == ()


def test_other_customers_are_never_grouped(make_app, billing, messenger, clock):
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=5)
    fail(app, billing, clock, "in_a", customer="cus_A")
    clock.advance(seconds=1)
    fail(app, billing, clock, "in_b", customer="cus_B")
    clock.advance(seconds=10)
    drain(app)
    assert sorted(m.customer_id for m in messenger.messages) == ["cus_A", "cus_B"]
    assert all(m.other_invoices == () for m in messenger.messages)


def test_window_zero_sends_the_first_message_at_once(make_app, billing, messenger, clock):
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=0)
    fail(app, billing, clock, "in_now")
    drain(app)
    assert len(messenger.messages) == 1


def test_the_default_window_is_five_minutes(make_app, billing, messenger, clock):
    assert load_settings({}).dunning.group_window_seconds == 300
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS="")  # unset: the default, not the tests' 0
    with app.app_context():
        assert services().settings.dunning.group_window_seconds == 300
    fail(app, billing, clock, "in_default")
    drain(app)
    [waiting] = first_messages(app)
    assert waiting.run_at == clock.now() + timedelta(seconds=300)
    clock.advance(seconds=299)
    drain(app)
    assert messenger.messages == []
    clock.advance(seconds=1)
    drain(app)
    assert len(messenger.messages) == 1


def test_reminders_keep_their_days(make_app, billing, clock):
    """The window delays only the first message: the cadence's reminders stay on their days."""
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=300)
    fail(app, billing, clock, "in_cadence")
    with app.app_context(), services().db.session() as s:
        steps = {n.step: n.run_at for n in s.scalars(select(Notification))}
    assert steps[0] == clock.now() + timedelta(seconds=300)
    assert steps[1] == clock.now() + timedelta(days=3)
    assert steps[2] == clock.now() + timedelta(days=7)


@pytest.mark.parametrize("window", [0, 5])
def test_three_d_secure_messages_never_wait(make_app, billing, messenger, clock, window):
    app = make_app(DUNNING_GROUP_WINDOW_SECONDS=window)
    inv = so.invoice(invoice_id="in_3ds")
    billing.put(inv)
    deliver(app, so.event("invoice.payment_action_required", inv))
    drain(app)
    assert [m.kind for m in messenger.messages] == ["action_required"]
