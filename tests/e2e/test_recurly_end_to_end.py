"""Recurly end to end over real sockets: the app under gunicorn, stand-in Recurly and Loops, SQLite or
PostgreSQL. Signed JSON notifications in, one email with our durable link out, the click redirected to
Recurly's hosted billing-info page built from the account's login token as it is at click time, the
payment in the ledger with `provider` and attribution, in exact minor units."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.e2e.conftest import LiveApp, serving
from tests.standins.loops import LoopsStandIn
from tests.standins.recurly import RecurlyStandIn, signed_webhook
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Event, LedgerEntry

pytestmark = pytest.mark.e2e
SECRET = "recurly-e2e-endpoint-secret"
OLD_SECRET = "recurly-e2e-previous-secret"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}
FINANCE = ("finance", "e2e-finance-password")


@pytest.fixture
def recurly() -> Iterator[RecurlyStandIn]:
    with serving(RecurlyStandIn()) as standin:
        yield standin


@pytest.fixture
def loops() -> Iterator[LoopsStandIn]:
    with serving(LoopsStandIn()) as standin:
        yield standin


@pytest.fixture
def recurly_app(database_url, live_app, recurly, loops):
    """The app with Recurly on (rotating its webhook secret) and Loops as the email tool.

    `database_url` first: fixtures are torn down in reverse, so gunicorn stops before its schema is dropped.
    """

    def _start(**env: str) -> LiveApp:
        app: LiveApp = live_app(
            database_url,
            RECURLY_API_KEY=recurly.api_key,
            RECURLY_WEBHOOK_SECRET=f"{SECRET},{OLD_SECRET}",
            RECURLY_SUBDOMAIN="acme",
            RECURLY_API_BASE=recurly.url,
            MESSAGING_PROVIDER="loops",
            LOOPS_API_KEY=loops.api_key,
            LOOPS_API_BASE=f"{loops.url}/api",
            LOOPS_TRANSACTIONAL_ID="tx_recovery",
            FINANCE_USERNAME=FINANCE[0],
            FINANCE_PASSWORD=FINANCE[1],
            **env,
        )
        app.database_url = database_url  # type: ignore[attr-defined]
        return app

    return _start


def post(app: LiveApp, notification: dict[str, Any], secret: str = SECRET, **kwargs: Any) -> requests.Response:
    body, headers = signed_webhook(notification, secret, **kwargs)
    return requests.post(f"{app.url}/webhooks/recurly", data=body, headers=headers, timeout=5)


def rows(database_url: str, model: type) -> list[Any]:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return list(s.scalars(select(model).order_by(model.id)))
    finally:
        engine.dispose()


def count(database_url: str, model: type) -> int:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return int(s.scalar(select(func.count(model.id))) or 0)
    finally:
        engine.dispose()


def test_failure_to_one_email_to_click_on_the_hosted_page_to_payment_in_the_ledger(recurly_app, recurly, loops):
    app = recurly_app()
    recurly.add_account("ada", email="ada@example.com")
    invoice = recurly.add_invoice("ada", total="49.99", currency="USD", number="1001")
    failed = recurly.notification("charge_invoice", "past_due", invoice_number=1001)

    assert post(app, failed).status_code == 200
    again = post(app, failed)  # Recurly redelivers the same notification: a duplicate, stored once
    assert again.status_code == 200 and again.json()["duplicate"] is True
    [email] = wait_for(lambda: loops.messages, what="the Loops email")
    # Recurly's dunning acts on the same invoice again: still the one email of this episode.
    assert post(app, recurly.notification("dunning_event", "created", invoice_number=1001)).status_code == 200
    time.sleep(1.0)
    assert len(loops.messages) == 1

    body = email["body"]
    data = body["dataVariables"]
    assert body["transactionalId"] == "tx_recovery" and body["email"] == "ada@example.com"
    assert (data["amountDue"], data["currency"], data["invoiceId"], data["invoiceNumber"]) == (
        "$49.99",
        "USD",
        "1001",
        "1001",
    )
    assert data["updatePaymentUrl"].startswith(f"{app.url}/r/")
    token_then = recurly._account_by_code("ada")["hosted_login_token"]
    assert token_then not in json.dumps(email)  # the login token never travels in an email

    # Recurly replaced the token after the email went out: the click must use the one it has now.
    token_now = recurly.rotate_login_token("ada")
    click = requests.get(data["updatePaymentUrl"], headers=BROWSER, allow_redirects=False, timeout=5)
    assert click.status_code == 303
    assert click.headers["Location"] == f"https://acme.recurly.com/account/billing_info/edit?ht={token_now}"
    hosted_path = click.headers["Location"].removeprefix("https://acme.recurly.com")
    assert requests.get(f"{recurly.url}{hosted_path}", timeout=5).status_code == 200  # the page takes it
    stale = requests.get(f"{recurly.url}/account/billing_info/edit?ht={token_then}", timeout=5)
    assert stale.status_code == 404

    recurly.pay_invoice(invoice["id"])
    assert post(app, recurly.notification("charge_invoice", "paid", invoice_number=1001)).status_code == 200
    [entry] = wait_for(lambda: rows(app.database_url, LedgerEntry), what="the ledger entry")
    assert (entry.provider, entry.invoice_id, entry.customer_id) == ("recurly", "1001", "ada")
    assert (entry.amount, entry.currency, entry.attribution, entry.livemode) == (4999, "usd", "link_click", False)
    assert len(loops.messages) == 1

    # Finance sees it under its provider, linked into the Recurly admin.
    finance = requests.get(f"{app.url}/finance/recoveries.json?provider=recurly", auth=FINANCE, timeout=5).json()
    [row] = finance["data"]
    assert (row["provider"], row["amount"], row["attribution"]) == ("recurly", "49.99", "link_click")
    assert row["invoice_url"] == "https://acme.recurly.com/invoices/1001"
    report = app.command("report", "--format", "json", "--mode", "test")
    assert report.returncode == 0, report.stderr
    [usd] = json.loads(report.stdout)["currencies"]
    assert (usd["currency"], usd["recoveries"], usd["recovered_net"], usd["link_click_count"]) == ("usd", 1, "49.99", 1)

    # Replaying the stored events changes nothing: no second email, no second ledger row.
    replayed = app.command("events", "replay", failed["id"])
    assert replayed.returncode == 0, replayed.stderr
    time.sleep(1.0)
    assert len(loops.messages) == 1 and len(rows(app.database_url, LedgerEntry)) == 1
    logs = app.logs()
    assert token_now not in logs and token_then not in logs and "ada@example.com" not in logs


def test_bad_signature_and_stale_timestamp_are_refused_and_nothing_is_stored(recurly_app, recurly):
    app = recurly_app()
    recurly.add_account("ada")
    recurly.add_invoice("ada", number="1001")
    notification = recurly.notification("charge_invoice", "past_due", invoice_number=1001)

    wrong = post(app, notification, secret="not-the-endpoint-secret")
    assert wrong.status_code == 400 and "no valid signature" in wrong.json()["message"]
    stale_ms = int((time.time() - 6 * 60) * 1000)
    stale = post(app, notification, timestamp_ms=stale_ms)
    assert stale.status_code == 400 and "too old" in stale.json()["message"]
    body, headers = signed_webhook(notification, SECRET)
    tampered = requests.post(
        f"{app.url}/webhooks/recurly", data=body.replace(b"1001", b"1002"), headers=headers, timeout=5
    )
    assert tampered.status_code == 400
    unsigned = requests.post(f"{app.url}/webhooks/recurly", data=body, timeout=5)
    assert unsigned.status_code == 400 and "missing recurly-signature" in unsigned.json()["message"]
    assert count(app.database_url, Event) == 0
    # The previous secret, still listed during a rotation, is accepted.
    assert post(app, notification, secret=OLD_SECRET).status_code == 200
    assert count(app.database_url, Event) == 1


def test_duplicate_and_out_of_order_deliveries_message_each_customer_once(recurly_app, recurly, loops):
    app = recurly_app()
    recurly.add_account("early-payer", email="early@example.com")
    paid_first = recurly.add_invoice("early-payer", number="2001")
    recurly.pay_invoice(paid_first["id"])
    recurly.add_account("bob", email="bob@example.com")
    recurly.add_invoice("bob", number="2002")

    # The payment's notification arrives before the failure's: nobody is asked to pay a paid invoice.
    assert post(app, recurly.notification("charge_invoice", "paid", invoice_number=2001)).status_code == 200
    assert post(app, recurly.notification("charge_invoice", "past_due", invoice_number=2001)).status_code == 200
    bob_failed = recurly.notification("charge_invoice", "past_due", invoice_number=2002)
    for _ in range(3):
        assert post(app, bob_failed).status_code == 200
    assert post(app, recurly.notification("dunning_event", "created", invoice_number=2002)).status_code == 200

    [entry] = wait_for(lambda: rows(app.database_url, LedgerEntry), what="the out-of-order recovery")
    wait_for(lambda: loops.messages, what="bob's email")
    time.sleep(1.5)
    assert [m["body"]["email"] for m in loops.messages] == ["bob@example.com"]
    assert (entry.invoice_id, entry.amount, entry.attribution) == ("2001", 4900, "provider_retry")
    assert count(app.database_url, Event) == 4


def test_recurly_decimal_amounts_land_in_the_ledger_as_exact_minor_units(recurly_app, recurly, loops):
    app = recurly_app()
    amounts = {"yen": (500, "JPY"), "dollar": ("19.99", "USD"), "dinar": ("12.345", "KWD")}
    invoices = {}
    for n, (code, (total, currency)) in enumerate(amounts.items()):
        recurly.add_account(code, email=f"{code}@example.com")
        invoices[code] = recurly.add_invoice(code, total=total, currency=currency, number=str(3001 + n))
        assert post(app, recurly.notification("charge_invoice", "past_due", invoice_number=3001 + n)).status_code == 200
    wait_for(lambda: len(loops.messages) == 3, what="three emails")
    shown = sorted(m["body"]["dataVariables"]["amountDue"] for m in loops.messages)
    assert shown == ["$19.99", "KWD 12.345", "¥500"]
    for n, code in enumerate(amounts):
        recurly.pay_invoice(invoices[code]["id"])
        assert post(app, recurly.notification("charge_invoice", "paid", invoice_number=3001 + n)).status_code == 200
    wait_for(lambda: count(app.database_url, LedgerEntry) == 3, what="three ledger rows")
    entries = rows(app.database_url, LedgerEntry)
    assert sorted((e.currency, e.amount) for e in entries) == [("jpy", 500), ("kwd", 12345), ("usd", 1999)]
    assert {e.provider for e in entries} == {"recurly"}


def test_campaign_with_provider_recurly_messages_every_past_due_customer_once(recurly_app, recurly, loops):
    app = recurly_app(WORKER_MODE="external")  # only the campaign's own sending runs
    for code in ("c1", "c2", "c3"):
        recurly.add_account(code, email=f"{code}@example.com")
        recurly.add_invoice(code, total="10.00")
        recurly.add_invoice(code, total="5.50")
    recurly.add_account("paid-up", email="paid@example.com")
    recurly.add_invoice("paid-up", state="paid", total="10.00", paid="10.00")

    dry = app.command("campaign", "--provider", "recurly", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would message") == 3 and loops.messages == []
    run = app.command("campaign", "--provider", "recurly")
    assert run.returncode == 0, run.stderr
    assert sorted(m["body"]["email"] for m in loops.messages) == ["c1@example.com", "c2@example.com", "c3@example.com"]
    assert all(m["body"]["dataVariables"]["invoiceCount"] == 2 for m in loops.messages)
    again = app.command("campaign", "--provider", "recurly")
    assert again.returncode == 0 and len(loops.messages) == 3
