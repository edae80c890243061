"""The whole product over real sockets: gunicorn, stand-in Stripe and Loops/Intercom, SQLite or PostgreSQL."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import LedgerEntry

pytestmark = pytest.mark.e2e
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}


def post(app, event: dict) -> requests.Response:
    body, headers = so.signed(event, WEBHOOK_SECRET)
    return requests.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=5)


def ledger(database_url: str) -> list[LedgerEntry]:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return s.scalars(select(LedgerEntry)).all()
    finally:
        engine.dispose()


def test_health_and_readiness_under_gunicorn(live_app, sqlite_url):
    app = live_app(sqlite_url, MESSAGING_PROVIDER="console")
    assert requests.get(f"{app.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{app.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_failed_payment_to_loops_email_to_link_click_to_recovery(live_app, database_url, stripe_standin, loops_standin):
    app = live_app(
        database_url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops_standin.api_key,
        LOOPS_API_BASE=f"{loops_standin.url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        WORKER_UPKEEP_SECONDS="0.3",
    )
    inv = so.invoice(amount_due=4900, currency="usd", attempt_count=1)
    stripe_standin.invoices[inv["id"]] = inv
    failed_at = int(time.time()) - 3600

    assert post(app, so.event("invoice.payment_failed", inv, created=failed_at)).status_code == 200
    wait_for(lambda: loops_standin.messages, what="the Loops email")
    # Stripe retries: the same invoice fails again; no new email.
    assert post(app, so.event("invoice.payment_failed", dict(inv, attempt_count=2))).status_code == 200
    time.sleep(1.0)
    [email] = loops_standin.messages
    [portal] = stripe_standin.portal_sessions
    assert portal["form"]["flow_data[type]"] == "payment_method_update"
    assert portal["form"]["flow_data[after_completion][redirect][return_url]"] == "https://app.example.test/billing"
    assert portal["idempotency_key"]
    body = email["body"]
    assert body["transactionalId"] == "tx_recovery" and body["email"] == "ada@example.com"
    data = body["dataVariables"]
    assert data["amountDue"] == "$49.00" and data["invoiceId"] == inv["id"]
    assert data["updatePaymentUrl"].startswith(f"{app.url}/r/")
    assert email["key"]  # sent with an Idempotency-Key

    click = requests.get(data["updatePaymentUrl"], headers=BROWSER, allow_redirects=False, timeout=5)
    assert click.status_code == 303
    assert click.headers["Location"].startswith(f"{stripe_standin.base_url}/p/session/")
    assert len(stripe_standin.portal_sessions) == 2  # minted at click time, not reused from the email

    paid = dict(inv, status="paid", attempt_count=3, amount_paid=4900, status_transitions={"paid_at": int(time.time())})
    stripe_standin.invoices[inv["id"]] = paid
    txn = stripe_standin.settle(inv["id"], amount=4900, fee=172)  # the charge that paid it, in the balance
    assert post(app, so.event("invoice.paid", paid)).status_code == 200
    [entry] = wait_for(lambda: ledger(database_url), what="the ledger entry")
    assert (entry.amount, entry.currency, entry.attribution) == (4900, "usd", "link_click")
    assert 3600 <= entry.seconds_to_recover <= 3700
    assert (entry.invoice_number, entry.customer_email) == ("INV-0001", "ada@example.com")
    assert len(loops_standin.messages) == 1
    # After the handler's transaction, the worker reads the balance transaction and fills it in once.
    [settled] = wait_for(
        lambda: [e for e in ledger(database_url) if e.settlement_status == "settled"], what="the settled figures"
    )
    assert (settled.settlement_id, settled.settled_amount, settled.settled_fee, settled.settled_net) == (
        txn["id"],
        4900,
        172,
        4728,
    )
    assert stripe_standin.count("GET", "/v1/invoice_payments") >= 1


def test_failed_payment_reaches_intercom_as_an_event_on_a_created_contact(
    live_app, sqlite_url, stripe_standin, intercom_standin
):
    app = live_app(
        sqlite_url,
        MESSAGING_PROVIDER="intercom",
        INTERCOM_ACCESS_TOKEN=intercom_standin.token,
        INTERCOM_API_BASE=intercom_standin.url,
    )
    inv = so.invoice(amount_due=500, currency="jpy")
    stripe_standin.invoices[inv["id"]] = inv
    assert post(app, so.event("invoice.payment_failed", inv)).status_code == 200
    [event] = wait_for(lambda: intercom_standin.events, what="the Intercom event")
    [contact] = intercom_standin.contacts
    assert contact["external_id"] == "cus_A" and contact["role"] == "user"
    assert event["metadata"]["invoice_id"] == inv["id"]
    assert event["metadata"]["update_payment_url"]["url"].startswith(f"{app.url}/r/")
    assert event["metadata"]["amount_due"] == {"amount": 500, "currency": "jpy"}
