"""Dunning cadence driven by a test clock: reminders until paid, stop rules, grouping, 3-D Secure."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.fixtures import stripe_objects as so
from tests.integration.test_recovery import all_rows, ts
from webhook_app.models import DunningCase, Notification
from webhook_app.worker import Worker


@pytest.fixture
def run(svc):
    return lambda: Worker(svc).run_once()


def fail(deliver, billing, clock, inv=None, **changes):
    inv = dict(inv or so.invoice(), **changes)
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv, created=ts(clock)))
    return inv


def kinds(messenger):
    return [(m.step, m.is_final_notice, m.template) for m in messenger.messages]


def advance_and_run(clock, run, days: float):
    clock.advance(days=days)
    run()


def test_full_sequence_first_message_day_3_day_7_and_one_final_notice(svc, deliver, billing, messenger, clock, run):
    inv = fail(deliver, billing, clock)
    run()
    assert kinds(messenger) == [(0, False, "first")]
    advance_and_run(clock, run, 2.9)
    assert len(messenger.messages) == 1
    advance_and_run(clock, run, 0.2)
    assert kinds(messenger)[-1] == (1, False, "reminder")
    advance_and_run(clock, run, 4)
    assert kinds(messenger)[-1] == (2, False, "reminder")
    advance_and_run(clock, run, 6)
    assert kinds(messenger)[-1] == (99, True, "final")
    assert messenger.messages[-1].data_variables()["isFinalNotice"] is True
    advance_and_run(clock, run, 30)
    assert len(messenger.messages) == 4
    [case] = all_rows(svc, DunningCase)
    assert case.messages_sent == 4 and case.invoice_id == inv["id"]


def test_no_message_after_payment(svc, deliver, billing, messenger, clock, run):
    inv = fail(deliver, billing, clock)
    run()
    clock.advance(days=1)
    paid = dict(
        inv, status="paid", attempt_count=2, amount_paid=inv["amount_due"], status_transitions={"paid_at": ts(clock)}
    )
    billing.put(paid)
    deliver(so.event("invoice.paid", paid))
    run()
    advance_and_run(clock, run, 20)
    assert len(messenger.messages) == 1
    assert {n.status for n in all_rows(svc, Notification) if n.step != 0} == {"canceled"}


def test_no_message_after_void(svc, deliver, billing, messenger, clock, run):
    inv = fail(deliver, billing, clock)
    run()
    deliver(so.event("invoice.voided", dict(inv, status="void")))
    run()
    advance_and_run(clock, run, 20)
    assert len(messenger.messages) == 1


def test_no_message_after_subscription_is_canceled(svc, deliver, billing, messenger, clock, run):
    fail(deliver, billing, clock)
    run()
    deliver(
        so.event(
            "customer.subscription.deleted",
            {"id": "sub_A", "object": "subscription", "customer": "cus_A", "status": "canceled"},
        )
    )
    advance_and_run(clock, run, 20)
    assert len(messenger.messages) == 1
    assert all_rows(svc, DunningCase)[0].status == "canceled"


def test_stripe_giving_up_brings_the_final_notice_forward_and_it_is_sent_only_once(
    svc, deliver, billing, messenger, clock, run
):
    inv = fail(deliver, billing, clock)
    run()
    clock.advance(days=1)
    fail(deliver, billing, clock, inv, attempt_count=2, next_payment_attempt=None)  # no retry scheduled
    run()
    assert kinds(messenger)[-1] == (99, True, "final")
    clock.advance(days=1)
    fail(deliver, billing, clock, inv, attempt_count=3, next_payment_attempt=None)
    advance_and_run(clock, run, 30)
    finals = [m for m in messenger.messages if m.is_final_notice]
    assert len(finals) == 1


def test_final_notice_moves_to_24h_before_stripes_last_retry(make_app, deliver, billing, messenger, clock):
    app = make_app(STRIPE_RETRY_ATTEMPTS=4)
    from webhook_app.services import services

    with app.app_context():
        svc = services()
    inv = so.invoice()
    for attempt in (1, 2, 3):  # after the 3rd failure, the 4th attempt (the last) is scheduled in 2 days
        inv = dict(inv, attempt_count=attempt, next_payment_attempt=ts(clock, days=2))
        billing.put(inv)
        body, headers = so.signed(
            so.event("invoice.payment_failed", inv, created=ts(clock)), "whsec_test_primary_0123456789"
        )
        app.test_client().post("/webhooks/stripe", data=body, headers=headers)
        Worker(svc).run_once()
    with svc.db.session() as s:
        final = s.scalars(select(Notification).where(Notification.step == 99)).one()
    assert final.run_at == clock.now() + timedelta(days=1)


def test_updated_payment_method_pauses_the_sequence_until_stripe_retries(svc, deliver, billing, messenger, clock, run):
    inv = fail(deliver, billing, clock)
    run()
    deliver(
        so.event(
            "customer.updated",
            {"id": "cus_A", "object": "customer", "invoice_settings": {"default_payment_method": "pm_new"}},
            data_previous={"invoice_settings": {"default_payment_method": "pm_old"}},
        )
    )
    run()
    [case] = all_rows(svc, DunningCase)
    assert case.status == "paused"
    advance_and_run(clock, run, 10)
    assert len(messenger.messages) == 1  # no reminders while Stripe retries with the new card
    fail(deliver, billing, clock, inv, attempt_count=3)  # the retry with the new card failed too
    run()
    assert len(messenger.messages) == 2 and messenger.messages[-1].step == 0
    [case] = all_rows(svc, DunningCase)
    assert (case.status, case.episode) == ("open", 2)


def test_attached_payment_method_also_pauses(svc, deliver, billing, messenger, clock, run):
    fail(deliver, billing, clock)
    run()
    deliver(so.event("payment_method.attached", {"id": "pm_1", "object": "payment_method", "customer": "cus_A"}))
    run()
    assert all_rows(svc, DunningCase)[0].status == "paused"


def test_two_failed_invoices_of_one_customer_go_out_in_one_message(svc, deliver, billing, messenger, clock, run):
    first = fail(deliver, billing, clock, so.invoice(amount_due=1000))
    second = fail(deliver, billing, clock, so.invoice(amount_due=2500))
    run()
    [message] = messenger.messages
    listed = {message.invoice.invoice_id, *(line.invoice_id for line in message.other_invoices)}
    assert listed == {first["id"], second["id"]}
    data = message.data_variables()
    assert data["invoiceCount"] == 2 and {i["amountDue"] for i in data["invoices"]} == {"$10.00", "$25.00"}
    step0 = [n for n in all_rows(svc, Notification) if n.step == 0]
    assert {n.status for n in step0} == {"sent"}
    assert all(c.messages_sent == 1 for c in all_rows(svc, DunningCase))


def test_action_required_sends_the_hosted_invoice_link(svc, deliver, billing, messenger, clock, run):
    inv = so.invoice(hosted_invoice_url="https://invoice.stripe.com/i/acct_1/authenticate_me")
    billing.put(inv)
    deliver(so.event("invoice.payment_action_required", inv))
    run()
    [message] = messenger.messages
    assert message.kind == "action_required" and message.template == "action_required"
    assert message.update_payment_url == "https://invoice.stripe.com/i/acct_1/authenticate_me"
    assert billing.sessions == []  # no portal: the customer authenticates the payment, not the card


def test_replaying_the_same_events_sends_no_extra_message(svc, deliver, billing, messenger, clock, run):
    inv = so.invoice()
    billing.put(inv)
    events = [
        so.event("invoice.payment_failed", inv, created=ts(clock)),
        so.event("invoice.payment_failed", dict(inv, attempt_count=2), created=ts(clock)),
    ]
    for event in events * 3:
        deliver(event)
    run()
    advance_and_run(clock, run, 3.5)
    from webhook_app.replay import requeue

    requeue(svc.db, clock.now(), event_ids=tuple(e["id"] for e in events))
    run()
    assert [m.step for m in messenger.messages] == [0, 1]


def test_quiet_hours_hold_a_message_until_the_customers_morning(make_app, deliver, billing, messenger, clock):
    app = make_app(QUIET_HOURS="21-8")
    from webhook_app.services import services

    with app.app_context():
        svc = services()
    clock.current = datetime(2026, 11, 30, 14, 30)  # 23:30 in Tokyo
    inv = so.invoice(customer_address={"country": "JP"})
    billing.put(inv)
    body, headers = so.signed(
        so.event("invoice.payment_failed", inv, created=ts(clock)), "whsec_test_primary_0123456789"
    )
    app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    Worker(svc).run_once()
    assert messenger.messages == []
    with svc.db.session() as s:
        first = s.scalars(select(Notification).where(Notification.step == 0)).one()
    assert first.run_at == datetime(2026, 11, 30, 23, 0)  # 08:00 in Tokyo
    clock.current = datetime(2026, 11, 30, 23, 0)
    Worker(svc).run_once()
    assert len(messenger.messages) == 1
