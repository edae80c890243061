"""Chargebee end to end over real sockets: gunicorn, the Chargebee and Loops stand-ins, SQLite or PostgreSQL.

failure event -> one Loops email with our /r/ link -> click -> a Chargebee hosted page minted at that
moment -> payment_succeeded -> one ledger row with provider and attribution. Bad basic auth stores
nothing; a forged delivery the API does not confirm sends nothing; duplicates and out-of-order
deliveries message each customer once; the campaign, `events replay` and `report` work on Chargebee
through the same core as Stripe (doctor: tests/integration/test_chargebee_doctor.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.e2e.conftest import serving
from tests.standins import Faults
from tests.standins.chargebee import ChargebeeStandIn
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Click, DunningCase, Event, LedgerEntry

pytestmark = pytest.mark.e2e
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}
USERNAME, PASSWORD = "chargebee-hooks", "pD8x-3kQ_mV7-long-random-password"
RETURN_URL = "https://app.example.test/billing"  # the live_app's PORTAL_RETURN_URL


@pytest.fixture
def cb() -> Iterator[ChargebeeStandIn]:
    with serving(ChargebeeStandIn(faults=Faults())) as standin:
        standin.base_url = standin.url  # hosted page URLs point back at the stand-in
        yield standin


def chargebee_env(cb: ChargebeeStandIn) -> dict[str, str]:
    return {
        "CHARGEBEE_SITE": cb.site,
        "CHARGEBEE_API_KEY": cb.api_key,
        "CHARGEBEE_API_BASE": f"{cb.url}/api/v2",
        "CHARGEBEE_WEBHOOK_USERNAME": USERNAME,
        "CHARGEBEE_WEBHOOK_PASSWORD": PASSWORD,
        "CHARGEBEE_RATE_PER_SECOND": "20",  # the stand-in's own 429s stand for Chargebee's limit
    }


def start(live_app, database_url: str, cb: ChargebeeStandIn, loops, **env: str):
    return live_app(
        database_url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops.api_key,
        LOOPS_API_BASE=f"{loops.url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        **chargebee_env(cb),
        **env,
    )


def basic(username: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def deliver(app, event: dict, headers: dict[str, str] | None = None) -> requests.Response:
    """POST the event as Chargebee does: its JSON body, basic auth on the endpoint."""
    return requests.post(
        f"{app.url}/webhooks/chargebee",
        data=ChargebeeStandIn.webhook_body(event),
        headers={"Content-Type": "application/json", **(basic() if headers is None else headers)},
        timeout=5,
    )


def rows(database_url: str, model, *where) -> list:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return s.scalars(select(model).where(*where)).all()
    finally:
        engine.dispose()


def settled(database_url: str, count: int) -> bool:
    """Every one of the `count` stored events is processed (done, ignored or failed)."""
    events = rows(database_url, Event)
    return len(events) == count and all(e.status in ("done", "ignored", "failed") for e in events)


def emails_to(loops, address: str) -> list[dict]:
    return [m for m in loops.messages if m["body"]["email"] == address]


def seed_customer(cb: ChargebeeStandIn, n: int, *, amount: int = 4900, **invoice) -> dict:
    cb.add_customer(f"cust_{n}", email=f"customer{n}@example.com", first_name="Customer", last_name=str(n))
    cb.add_subscription(f"sub_{n}", customer_id=f"cust_{n}")
    return cb.add_invoice(f"inv_{n}", customer_id=f"cust_{n}", subscription_id=f"sub_{n}", amount_due=amount, **invoice)


def test_failure_to_email_to_hosted_page_at_click_to_recovery_in_the_ledger(live_app, database_url, cb, loops_standin):
    app = start(live_app, database_url, cb, loops_standin)
    cb.add_customer("cust_ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
    cb.add_subscription("sub_ada", customer_id="cust_ada")
    cb.add_invoice("inv_1001", customer_id="cust_ada", subscription_id="sub_ada", amount_due=4900)
    failed = cb.add_invoice_event("payment_failed", "inv_1001", occurred_at=int(time.time()) - 3600)

    first = deliver(app, failed)
    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert deliver(app, failed).json()["duplicate"] is True  # Chargebee's retry of the same delivery
    [email] = wait_for(lambda: loops_standin.messages, what="the Loops email")
    emailed_at = time.time()
    # Chargebee retries the charge and it fails again: a new event, no new email.
    cb.fail_attempt("inv_1001")
    assert deliver(app, cb.add_invoice_event("payment_failed", "inv_1001")).status_code == 200
    wait_for(lambda: settled(database_url, 2), what="both failure events to be processed")

    body = email["body"]
    assert (body["transactionalId"], body["email"]) == ("tx_recovery", "ada@example.com")
    data = body["dataVariables"]
    assert (data["amountDue"], data["currency"], data["invoiceId"], data["invoiceNumber"]) == (
        "$49.00",
        "USD",
        "inv_1001",
        "inv_1001",
    )
    assert data["customerName"] == "Ada Lovelace"
    assert data["updatePaymentUrl"].startswith(f"{app.url}/r/")
    assert email["key"]  # sent with an idempotency key
    assert cb.hosted_pages == []  # the email carries our durable link; nothing that can expire was minted

    click = requests.get(data["updatePaymentUrl"], headers=BROWSER, allow_redirects=False, timeout=5)
    assert click.status_code == 303
    [minted] = cb.hosted_pages
    assert minted["minted_at"] > emailed_at  # minted at click time, not when the email went out
    assert minted["type"] == "collect_now"  # an invoice is due: the customer pays it (and may change card)
    assert minted["form"] == {"customer[id]": "cust_ada", "redirect_url": RETURN_URL}
    assert click.headers["Location"] == minted["hosted_page"]["url"]
    page = requests.get(click.headers["Location"], timeout=5)
    assert page.status_code == 200 and "cust_ada" in page.text
    [recorded] = rows(database_url, Click)
    assert (recorded.provider, recorded.update_link_id) == ("chargebee", minted["hosted_page"]["id"])

    cb.pay_invoice("inv_1001")  # the customer paid on the hosted page
    assert deliver(app, cb.add_invoice_event("payment_succeeded", "inv_1001")).status_code == 200
    [entry] = wait_for(lambda: rows(database_url, LedgerEntry), what="the ledger entry")
    assert (entry.provider, entry.kind, entry.invoice_id, entry.customer_id) == (
        "chargebee",
        "recovery",
        "inv_1001",
        "cust_ada",
    )
    assert (entry.amount, entry.currency, entry.attribution, entry.livemode) == (4900, "usd", "link_click", False)
    assert 3600 <= entry.seconds_to_recover <= 3700
    assert entry.first_click_at is not None and entry.messages_sent == 1
    assert len(loops_standin.messages) == 1

    report = app.command("report", "--provider", "chargebee", "--format", "json")
    assert report.returncode == 0, report.stderr
    [usd] = json.loads(report.stdout)["currencies"]
    assert (usd["currency"], usd["recovered_net_minor"], usd["recoveries"]) == ("usd", 4900, 1)


def test_bad_basic_auth_is_401_and_stores_nothing(live_app, database_url, cb, loops_standin):
    app = start(live_app, database_url, cb, loops_standin)
    cb.add_customer("cust_ada")
    cb.add_invoice("inv_1", customer_id="cust_ada")
    event = cb.add_invoice_event("payment_failed", "inv_1")

    for headers in ({}, basic(password="guess"), basic(username="admin")):
        refused = deliver(app, event, headers)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")

    assert rows(database_url, Event) == []
    assert not any(path.startswith("/api/v2/") for _, path in cb.requests)  # not even a confirmation call
    assert loops_standin.messages == []


def test_forged_deliveries_with_good_auth_that_the_api_does_not_confirm_send_nothing(
    live_app, database_url, cb, loops_standin
):
    app = start(live_app, database_url, cb, loops_standin)
    cb.add_customer("cust_ada", email="ada@example.com")
    cb.add_invoice("inv_1", customer_id="cust_ada")
    # An event Chargebee never created, about a real customer and invoice.
    genuine_shape = cb.add_invoice_event("payment_failed", "inv_1", event_id="ev_forged")
    del cb.events["ev_forged"]
    # A real event id, delivered with another type and content than Chargebee recorded.
    real = cb.add_payment_source_event("payment_source_added", "cust_ada")
    retyped = {**genuine_shape, "id": real["id"]}

    assert deliver(app, genuine_shape).status_code == 200  # basic auth passed: stored, then confirmed
    assert deliver(app, retyped).status_code == 200
    wait_for(lambda: settled(database_url, 2), what="the forged events to be processed")

    events = {e.event_id: e for e in rows(database_url, Event)}
    assert events["ev_forged"].status == "failed" and "does not know event ev_forged" in events["ev_forged"].last_error
    assert events[real["id"]].status == "failed" and "forged" in events[real["id"]].last_error
    assert ("GET", "/api/v2/events/ev_forged") in cb.requests
    assert rows(database_url, DunningCase) == []
    time.sleep(0.5)
    assert loops_standin.messages == [] and cb.hosted_pages == []


def test_duplicate_and_out_of_order_deliveries_message_each_customer_once(live_app, database_url, cb, loops_standin):
    app = start(live_app, database_url, cb, loops_standin)
    now = int(time.time())
    # Customer 1: three failures of one invoice (Chargebee's retries), delivered late, twice, reversed.
    seed_customer(cb, 1)
    failures = [cb.add_invoice_event("payment_failed", "inv_1", occurred_at=now - 7200)]
    for hours_ago in (2, 1):
        cb.fail_attempt("inv_1")
        failures.append(cb.add_invoice_event("payment_failed", "inv_1", occurred_at=now - 3600 * hours_ago + 60))
    # Customer 2: the payment's event arrives before the failure it recovered from.
    seed_customer(cb, 2, amount=1500)
    late_failure = cb.add_invoice_event("payment_failed", "inv_2", occurred_at=now - 600)
    cb.pay_invoice("inv_2")
    early_payment = cb.add_invoice_event("payment_succeeded", "inv_2", occurred_at=now - 60)

    order = [failures[2], early_payment, failures[0], failures[2], late_failure, failures[1], failures[0]]
    for event in order:
        assert deliver(app, event).status_code == 200
    wait_for(lambda: settled(database_url, 5), what="every distinct event to be processed")
    wait_for(lambda: emails_to(loops_standin, "customer1@example.com"), what="customer 1's email")

    replay = app.command("events", "replay", failures[0]["id"], late_failure["id"])
    assert replay.returncode == 0 and "queued 2 event(s)" in replay.stdout
    wait_for(lambda: settled(database_url, 5), what="the replayed events")
    time.sleep(1.0)  # anything wrongly scheduled would go out now

    assert len(emails_to(loops_standin, "customer1@example.com")) == 1
    assert emails_to(loops_standin, "customer2@example.com") == []  # paid before its failure was even seen
    [case] = rows(database_url, DunningCase, DunningCase.invoice_id == "inv_1")
    assert (case.status, case.attempt_count, case.messages_sent) == ("open", 3, 1)
    [entry] = rows(database_url, LedgerEntry)
    assert (entry.provider, entry.invoice_id, entry.amount, entry.attribution) == (
        "chargebee",
        "inv_2",
        1500,
        "provider_retry",
    )


def test_campaign_messages_each_customer_owing_chargebee_once_through_its_rate_limit(
    live_app, sqlite_url, cb, loops_standin
):
    app = start(live_app, sqlite_url, cb, loops_standin, WORKER_MODE="external")
    for n in range(1, 6):
        seed_customer(cb, n, dunning_attempts=2)
    cb.add_invoice("inv_5b", customer_id="cust_5", amount_due=900, dunning_attempts=1)  # a second one for 5
    seed_customer(cb, 6, status="voided", dunning_status="stopped")  # not listed: nothing owed
    seed_customer(cb, 7, dunning_status=None, dunning_attempts=0)  # owed but never charged yet
    seed_customer(cb, 8)
    cb.customers["cust_8"]["auto_collection"] = "off"  # pays by invoice, not by card
    cb.faults.throttle_rate = 0.2  # a fifth of the API calls answered 429 (Retry-After: 1)

    run = app.command("campaign", "--provider", "chargebee", "--concurrency", "2")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "unpaid invoices listed: 8" in run.stdout
    assert "sent: 5" in run.stdout
    assert "not attempted yet 1" in run.stdout and "sent for manual payment 1" in run.stdout
    assert cb.faults.counts["429"] > 0 and "rate limits absorbed" in run.stdout
    for n in range(1, 6):
        assert len(emails_to(loops_standin, f"customer{n}@example.com")) == 1
    [five] = emails_to(loops_standin, "customer5@example.com")
    assert five["body"]["dataVariables"]["invoiceCount"] == 2  # one message for both of customer 5's invoices
    assert len(loops_standin.messages) == 5

    rerun = app.command("campaign", "--provider", "chargebee")
    assert rerun.returncode == 0 and "sent: 0" in rerun.stdout  # within the cooldown: nobody twice
    assert len(loops_standin.messages) == 5
