"""Recurly through the whole core on SQLite and PostgreSQL: signed notifications into the app, the
real Recurly provider talking HTTP to the stand-in on a real socket, a frozen clock for the cadence.

What is checked: the shared cadence (reminders, final notice) with a provider that never says when it
retries; the pause on a billing-info update and the new sequence when Recurly's retry fails again;
collect-on-update charging once even when replayed; a rejected key leaving events waiting; the doctor's
Recurly lines; the campaign paging Recurly's past-due invoices through the 400-a-minute bucket.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from tests.conftest import base_config
from tests.fakes import FakeTime, RecordingMessenger
from tests.integration.test_recovery import all_rows
from tests.standins import serve
from tests.standins.recurly import RecurlyStandIn, signed_webhook
from webhook_app import create_app, migrate, replay
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.clock import FrozenClock
from webhook_app.models import DunningCase, Event, LedgerEntry, Notification
from webhook_app.ops.campaign import CampaignOptions, run_campaign
from webhook_app.ops.doctor import run_checks
from webhook_app.providers.recurly.billing import RecurlyBilling
from webhook_app.providers.recurly.client import RecurlyClient
from webhook_app.services import Services, services
from webhook_app.worker import Worker

SECRET = "recurly-endpoint-secret-0123456789"


@pytest.fixture
def recurly() -> Iterator[RecurlyStandIn]:
    standin = RecurlyStandIn()
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


@dataclass
class Env:
    """The app wired to the Recurly stand-in, with the test's clock and messenger."""

    app: Flask
    svc: Services
    recurly: RecurlyStandIn
    messenger: RecordingMessenger
    clock: FrozenClock

    def deliver(self, object_type: str, event_type: str, **identifiers: Any) -> dict[str, Any]:
        notification = self.recurly.notification(object_type, event_type, **identifiers)
        body, headers = signed_webhook(notification, SECRET)
        response = self.app.test_client().post("/webhooks/recurly", data=body, headers=headers)
        assert response.status_code == 200, response.get_json()
        return notification

    def run(self) -> int:
        return Worker(self.svc).run_once()

    def advance_and_run(self, days: float) -> None:
        self.clock.advance(days=days)
        self.run()

    def steps(self) -> list[tuple[int, str]]:
        return [(m.step, m.template) for m in self.messenger.messages]


@pytest.fixture
def make_env(database_url, clock, recurly) -> Iterator[Any]:
    apps: list[Flask] = []

    def _make(billing: RecurlyBilling | None = None, **overrides: str) -> Env:
        recurly_env = {
            "RECURLY_API_KEY": recurly.api_key,
            "RECURLY_WEBHOOK_SECRET": f"old-secret-being-rotated,{SECRET}",
            "RECURLY_SUBDOMAIN": "acme",
            "RECURLY_API_BASE": recurly.url,
            # Recurly only: nothing here may reach for Stripe (the doctor would call its API).
            "STRIPE_SECRET_KEY": "",
            "STRIPE_WEBHOOK_SECRET": "",
        }
        config = base_config(database_url, **{**recurly_env, **overrides})
        messenger = RecordingMessenger()
        app = create_app(config, messenger=messenger, clock=clock, billing={"recurly": billing} if billing else None)
        apps.append(app)
        with app.app_context():
            svc = services()
        migrate.upgrade(svc.db)
        return Env(app, svc, recurly, messenger, clock)

    yield _make
    for app in apps:
        app.extensions["webhook_app"].db.dispose()


@pytest.fixture
def env(make_env) -> Env:
    return make_env()


def test_failure_follows_the_shared_cadence_and_the_final_notice_waits_for_its_day(env):
    env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", total="49.99", number="1001")
    env.deliver("charge_invoice", "past_due", invoice_number=1001)
    env.run()
    [first] = env.messenger.messages
    data = first.data_variables()
    assert data["updatePaymentUrl"].startswith("https://recover.example.test/r/")
    assert not data["portalUrl"]  # the hosted page's URL is a login: it never goes into an email
    assert (data["amountDue"], data["invoiceId"], data["invoiceNumber"]) == ("$49.99", "1001", "1001")
    assert first.email == "ada@example.com" and first.customer_name == "Ada Lovelace"
    # Recurly does not say when it retries: the final notice is not pulled forward to now.
    env.advance_and_run(3.1)
    env.advance_and_run(4)
    assert env.steps() == [(0, "first"), (1, "reminder"), (2, "reminder")]
    env.advance_and_run(6)
    assert env.steps()[-1] == (99, "final")
    env.advance_and_run(30)
    assert len(env.messenger.messages) == 4
    [case] = all_rows(env.svc, DunningCase)
    assert (case.provider, case.customer_id, case.invoice_id, case.amount_due) == ("recurly", "ada", "1001", 4999)
    assert case.livemode is False  # a sandbox site


def test_recurlys_final_dunning_event_sends_the_final_notice_at_once(env):
    env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", number="1002")
    env.deliver("charge_invoice", "past_due", invoice_number=1002)
    env.run()
    env.recurly.send_dunning_event(env.recurly._find_invoice("number-1002")["id"], final=True)
    env.deliver("dunning_event", "created", invoice_number=1002)
    env.run()
    assert env.steps() == [(0, "first"), (99, "final")]


def test_billing_info_update_pauses_and_a_retry_that_fails_again_starts_a_new_sequence(env):
    ada = env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", number="1003")
    env.deliver("charge_invoice", "past_due", invoice_number=1003)
    env.run()
    env.deliver("billing_info", "updated", account_code="ada")
    env.run()
    [case] = all_rows(env.svc, DunningCase)
    assert case.status == "paused"
    env.advance_and_run(10)
    assert len(env.messenger.messages) == 1  # paused: no reminders while Recurly retries
    env.recurly.update_billing_info(ada["id"], card_works=False)
    env.deliver("dunning_event", "created", invoice_number=1003)  # the retry failed: dunning goes on
    env.run()
    assert env.steps() == [(0, "first"), (0, "first")]
    [case] = all_rows(env.svc, DunningCase)
    assert (case.status, case.episode) == ("open", 2)
    assert env.recurly.collections == []  # RECURLY_COLLECT_ON_UPDATE is off


def test_collect_on_update_charges_once_records_the_recovery_and_a_replay_charges_nothing(make_env):
    env = make_env(RECURLY_COLLECT_ON_UPDATE="true")
    ada = env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", number="1004", total=500, currency="JPY")
    env.deliver("charge_invoice", "past_due", invoice_number=1004)
    env.run()
    env.recurly.update_billing_info(ada["id"], card_works=True)
    update = env.deliver("billing_info", "updated", account_code="ada")
    env.run()
    assert env.recurly.collections == [
        {"invoice_id": env.recurly._find_invoice("number-1004")["id"], "outcome": "paid"}
    ]
    [entry] = all_rows(env.svc, LedgerEntry)
    assert (entry.provider, entry.invoice_id, entry.amount, entry.currency) == ("recurly", "1004", 500, "jpy")
    assert replay.requeue(env.svc.db, env.clock.now(), event_ids=(update["id"],))[0] == 1
    env.run()
    env.deliver("charge_invoice", "paid", invoice_number=1004)  # Recurly's own notification of the payment
    env.run()
    assert len(env.recurly.collections) == 1 and len(all_rows(env.svc, LedgerEntry)) == 1
    assert len(env.messenger.messages) == 1


def test_collect_on_update_declined_messages_again_at_once_and_a_replay_charges_nothing(make_env):
    env = make_env(RECURLY_COLLECT_ON_UPDATE="true")
    ada = env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", number="1005")
    env.deliver("charge_invoice", "past_due", invoice_number=1005)
    env.run()
    env.recurly.update_billing_info(ada["id"], card_works=False)
    update = env.deliver("billing_info", "updated", account_code="ada")
    env.run()
    assert [c["outcome"] for c in env.recurly.collections] == ["declined"]
    assert env.steps() == [(0, "first"), (0, "first")]  # the new card was declined: a new sequence
    replay.requeue(env.svc.db, env.clock.now(), event_ids=(update["id"],))
    env.run()
    assert [c["outcome"] for c in env.recurly.collections] == ["declined"]
    assert len(env.messenger.messages) == 2


def test_a_rejected_api_key_leaves_the_event_waiting_for_the_operator(make_env):
    env = make_env(RECURLY_API_KEY="not-the-key")
    env.recurly.add_account("ada")
    env.recurly.add_invoice("ada", number="1006")
    env.deliver("charge_invoice", "past_due", invoice_number=1006)
    env.run()
    [event] = all_rows(env.svc, Event)
    assert event.status == "pending" and "RECURLY_API_KEY" in event.last_error
    assert event.run_at >= env.clock.now() + timedelta(minutes=59)
    assert env.recurly.api_key not in event.last_error and env.messenger.messages == []


def test_doctor_checks_the_key_and_subdomain_and_warns_about_what_the_api_cannot_show(make_env):
    env = make_env(RECURLY_SUBDOMAIN="acme-typo")
    lines = {c.name: (c.status, c.detail, c.fix or "") for c in run_checks(env.svc) if c.name.startswith("recurly")}
    status, detail, _ = lines["recurly webhook secret"]
    assert status == "ok" and "2 signing secret(s)" in detail
    status, detail, _ = lines["recurly key"]
    assert status == "ok" and "site acme (sandbox: test rows)" in detail
    status, _, fix = lines["recurly subdomain"]
    assert status == "fail" and "RECURLY_SUBDOMAIN=acme" in fix
    status, detail, _ = lines["recurly dunning emails"]
    assert status == "warn" and "two emails" in detail
    status, detail, _ = lines["recurly hosted pages"]
    assert status == "warn" and "Hosted Account Management" in detail
    good = {c.name: c.status for c in run_checks(make_env().svc)}
    assert good["recurly subdomain"] == "ok"
    rejected = {c.name: c for c in run_checks(make_env(RECURLY_API_KEY="nope").svc)}
    assert rejected["recurly key"].status == "fail" and "401" in rejected["recurly key"].detail


def test_campaign_pages_recurly_past_due_invoices_through_the_400_a_minute_bucket(make_env, recurly):
    fake = FakeTime()
    client = RecurlyClient(
        api_key=recurly.api_key,
        base_url=recurly.url,
        bucket=TokenBucket(400 / 60, clock=fake.clock, sleep=fake.sleep),  # the default rate, simulated time
    )
    env = make_env(billing=RecurlyBilling(client, "acme"))
    for n in range(30):
        recurly.add_account(f"acct-{n}", email=f"customer{n}@example.com")
        for _ in range(7):  # 210 past-due invoices: two pages of Recurly's 200
            recurly.add_invoice(f"acct-{n}", total="10.01")
    recurly.add_account("paid-up")
    recurly.add_invoice("paid-up", state="paid", paid="49.99", total="49.99")

    report = run_campaign(
        env.svc,
        CampaignOptions(provider="recurly", concurrency=4),
        echo=lambda line: None,
        progress_stream=io.StringIO(),
    )
    assert (report.listed, report.customers, report.sent) == (210, 30, 30)
    assert len(env.messenger.messages) == 30
    assert all(len(m.other_invoices) == 6 for m in env.messenger.messages)  # one message per customer
    listing = [path for method, path in recurly.requests if path.startswith("/invoices?")]
    assert len(listing) == 2  # paged
    api_calls = [path for _, path in recurly.requests if not path.startswith("/account/")]
    # Every call took a token from the 400/min bucket: the simulated clock moved accordingly.
    assert fake.now >= (len(api_calls) - 7) / (400 / 60)
    assert {n.status for n in all_rows(env.svc, Notification)} == {"sent"}
