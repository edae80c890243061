"""Outbound failures are visible: `notifications list`, `events list` marking an event whose message
later failed, `doctor`'s failed/held/inbox lines, and errors named for what is missing.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from tests.fixtures import stripe_objects as so
from webhook_app.errors import ConfigurationNeeded, InvoiceMissing, MessengerRejected, ResourceMissing
from webhook_app.models import DunningCase, Event, Notification
from webhook_app.worker import Worker


def fail(deliver, billing, invoice_id: str, customer: str = "cus_A") -> dict:
    inv = so.invoice(invoice_id=invoice_id, customer=customer)
    billing.put(inv)
    assert deliver(so.event("invoice.payment_failed", inv, event_id=f"evt_{invoice_id}")).status_code == 200
    return inv


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_notifications_list_shows_failed_held_and_pending_with_their_reasons(app, svc, deliver, billing, messenger):
    fail(deliver, billing, "in_rejected", customer="cus_rejected")
    messenger.fail_with = MessengerRejected("Loops rejected the transactional email with HTTP 400: Invalid email")
    Worker(svc).run_once()
    fail(deliver, billing, "in_held", customer="cus_held")
    messenger.fail_with = ConfigurationNeeded("LOOPS_API_KEY is not set, so Loops cannot send recovery messages")
    Worker(svc).run_once()

    failed = cli(app, "notifications", "list", "--status", "failed")
    [line] = [ln for ln in failed.output.splitlines() if "in_rejected" in ln]
    assert "cus_rejected" in line and "first" in line and "failed" in line and "attempts=1" in line
    assert "error: MessengerRejected: Loops rejected the transactional email with HTTP 400: Invalid email" in line
    assert "in_held" not in failed.output

    held = cli(app, "notifications", "list", "--status", "held", "--json")
    [row] = [json.loads(ln) for ln in held.output.splitlines()]
    assert row["invoice"] == "in_held" and row["customer"] == "cus_held" and row["status"] == "held"
    assert row["last_error"].startswith("ConfigurationNeeded: LOOPS_API_KEY is not set")
    assert row["next_try"] is not None  # held messages are tried again by themselves

    pending = cli(app, "notifications", "list", "--status", "pending")
    reminders = [ln for ln in pending.output.splitlines() if "reminder" in ln]
    assert reminders and all("next try: " in ln for ln in reminders)
    assert "totals: " in pending.output and "failed=" in pending.output and "held=" in pending.output


def test_events_list_marks_an_event_whose_message_later_failed(app, svc, deliver, billing, messenger):
    fail(deliver, billing, "in_ok", customer="cus_ok")
    Worker(svc).run_once()
    fail(deliver, billing, "in_bad", customer="cus_bad")
    messenger.fail_with = MessengerRejected("Loops rejected the transactional email with HTTP 400: bad address")
    Worker(svc).run_once()

    with svc.db.session() as s:
        failed_id = s.scalar(select(Notification.id).where(Notification.status == "failed"))
    result = cli(app, "events", "list")
    lines = {ln.split()[1]: ln for ln in result.output.splitlines() if ln.startswith("stripe")}
    assert "message" not in lines["evt_in_ok"]
    assert " done " in lines["evt_in_bad"]  # the event itself was fine: its message failed later
    assert lines["evt_in_bad"].endswith(f"message {failed_id} failed")
    assert "notifications list --status failed" in result.output

    as_json = {json.loads(ln)["id"]: json.loads(ln) for ln in cli(app, "events", "list", "--json").output.splitlines()}
    assert as_json["evt_in_bad"]["messages_failed"] == [failed_id]
    assert as_json["evt_in_ok"]["messages_failed"] == []


def test_a_missing_invoice_is_named_invoice_missing_never_customer_missing(svc, deliver, billing, messenger):
    fail(deliver, billing, "in_gone")
    billing.fail_with = InvoiceMissing("Stripe resource_missing: No such invoice: 'in_gone'")
    Worker(svc).run_once()
    with svc.db.session() as s:
        notification = s.scalars(select(Notification).where(Notification.step == 0)).one()
        case = s.scalars(select(DunningCase)).one()
    assert notification.status == "failed"
    assert notification.last_error == "InvoiceMissing: Stripe resource_missing: No such invoice: 'in_gone'"
    assert case.status == "error"


def test_any_missing_kind_is_named_for_itself(svc, deliver, billing):
    fail(deliver, billing, "in_sub")
    billing.fail_with = ResourceMissing("Paddle has no such subscription (sub_1)", kind="subscription")
    Worker(svc).run_once()
    with svc.db.session() as s:
        error = s.scalar(select(Notification.last_error).where(Notification.step == 0))
    assert error == "SubscriptionMissing: Paddle has no such subscription (sub_1)"


def test_doctor_reports_failed_and_held_messages_and_the_oldest_waiting_event(
    app, svc, deliver, billing, messenger, clock
):
    fail(deliver, billing, "in_rejected", customer="cus_1")
    messenger.fail_with = MessengerRejected("Loops rejected it")
    Worker(svc).run_once()
    fail(deliver, billing, "in_held", customer="cus_2")
    messenger.fail_with = ConfigurationNeeded("LOOPS_API_KEY is not set")
    Worker(svc).run_once()
    fail(deliver, billing, "in_waiting", customer="cus_3")  # no worker takes it
    with svc.db.session() as s:
        s.execute(update(Event).where(Event.event_id == "evt_in_waiting").values(received_at=clock.now()))
    clock.advance(minutes=12)

    output = cli(app, "doctor").output
    lines = output.splitlines()
    held = next(ln for ln in lines if ln.startswith("! held messages"))
    assert "1 message(s) wait for an operator; the latest: ConfigurationNeeded: LOOPS_API_KEY is not set" in held
    failed = next(ln for ln in lines if ln.startswith("! failed messages"))
    assert failed.endswith("1 message(s) failed for good and were not sent")
    inbox = next(ln for ln in lines if ln.startswith("! inbox"))
    assert "1 event(s) waiting, the oldest received 12m ago" in inbox
    assert "is a worker running?" in output


def test_doctor_says_all_is_quiet_when_it_is(app, svc, deliver, billing, clock):
    fail(deliver, billing, "in_fine")
    Worker(svc).run_once()
    lines = cli(app, "doctor").output.splitlines()
    assert any(ln.startswith("✓ messages") and "no failed or held messages" in ln for ln in lines)
    assert any(ln.startswith("✓ inbox") and "no event waiting" in ln for ln in lines)


def test_a_stale_event_is_measured_from_when_it_arrived(app, svc, deliver, billing, clock):
    fail(deliver, billing, "in_old")
    clock.advance(days=2, hours=1)
    inbox = next(ln for ln in cli(app, "doctor").output.splitlines() if "inbox" in ln)
    assert inbox.startswith("! inbox") and "the oldest received 2d ago" in inbox
