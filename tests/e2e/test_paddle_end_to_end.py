"""Paddle Billing end to end over real sockets: gunicorn, the Paddle and Loops stand-ins, SQLite or PostgreSQL,
and our update page in headless Chromium (Paddle.js stubbed by the stand-in's /paddle.js).

failure (payment_failed, past_due, subscription.past_due, a duplicate) -> one email with our /r/ link ->
the browser follows it -> Paddle's update-payment-method transaction fetched at click time -> our page
opens Paddle.Checkout on it under its CSP -> transaction.completed -> one ledger row (provider, attribution).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.e2e.conftest import serving
from tests.e2e.test_finance_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.e2e.test_recovery_end_to_end import BROWSER
from tests.standins.paddle import API_KEY, WEBHOOK_SECRET, PaddleStandIn, signed_webhook
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Click, DunningCase, Event, LedgerEntry

pytestmark = pytest.mark.e2e
CLIENT_TOKEN = "test_0123456789abcdef0123456789a"
FINANCE_PASSWORD = "finance-e2e-password"


@pytest.fixture
def paddle_standin() -> Iterator[PaddleStandIn]:
    with serving(PaddleStandIn()) as standin:
        standin.base_url = standin.url
        yield standin


# Tests ask for `database_url` before `paddle_app`: fixtures are torn down in reverse, so gunicorn stops
# before the PostgreSQL schema is dropped (dropping it under live connections can deadlock).
@pytest.fixture
def paddle_app(live_app: Any, paddle_standin: PaddleStandIn, loops_standin: Any) -> Any:
    """The app with Paddle (sandbox, pointed at the stand-in) and Loops configured."""

    def start(database_url: str, **env: str) -> Any:
        return live_app(
            database_url,
            PADDLE_API_KEY=API_KEY,
            PADDLE_WEBHOOK_SECRET=f"pdl_ntfset_old_rotated_secret,{WEBHOOK_SECRET}",
            PADDLE_CLIENT_TOKEN=CLIENT_TOKEN,
            PADDLE_ENVIRONMENT="sandbox",
            PADDLE_API_BASE=paddle_standin.base_url,
            MESSAGING_PROVIDER="loops",
            LOOPS_API_KEY=loops_standin.api_key,
            LOOPS_API_BASE=f"{loops_standin.url}/api",
            LOOPS_TRANSACTIONAL_ID="tx_recovery",
            FINANCE_USERNAME="finance",
            FINANCE_PASSWORD=FINANCE_PASSWORD,
            **env,
        )

    return start


def deliver(app: Any, event: dict[str, Any]) -> requests.Response:
    body, headers = signed_webhook(event)
    return requests.post(f"{app.url}/webhooks/paddle", data=body, headers=headers, timeout=5)


def rows(database_url: str, model: type) -> list[Any]:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return list(s.scalars(select(model)).all())
    finally:
        engine.dispose()


def count(database_url: str, model: type) -> int:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def failing_subscription(paddle: PaddleStandIn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Ada's $49.00 renewal declined: (customer, subscription, past_due transaction)."""
    customer = paddle.add_customer("ada@example.com", "Ada Lovelace")
    sub = paddle.add_subscription(customer["id"], unit_amount=4900, country_code="GB")
    txn = paddle.fail_renewal(sub["id"], error_code="declined")
    return customer, paddle.subscriptions[sub["id"]], txn


def open_update_page_in_chromium(url: str) -> dict[str, Any]:
    """Follow the emailed link like a customer's browser; what the page showed and asked Paddle.js to do."""
    sync_playwright = _playwright()  # type: ignore[no-untyped-call]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # A desktop Chrome user agent: /r/ answers headless browsers (link previewers) with a preview.
            context = browser.new_context(user_agent=BROWSER["User-Agent"], viewport={"width": 390, "height": 844})
            context.add_init_script(
                "window.__cspViolations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page = context.new_page()
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            response = page.goto(url, wait_until="load")
            page.wait_for_function("() => (window.__paddleCalls || []).some((c) => c.name === 'Checkout.open')")
            seen = {
                "status": response.status if response else None,
                "url": page.url,
                "csp": (response.headers.get("content-security-policy") if response else None),
                "calls": page.evaluate("() => window.__paddleCalls"),
                "violations": page.evaluate("() => window.__cspViolations"),
                "console_errors": console_errors,
                "h1": page.inner_text("h1"),
                "text": page.inner_text("main"),
                "brand": page.inner_text("header"),
                "lang": page.get_attribute("html", "lang"),
                "button": page.get_by_role("button", name="Update payment method").is_enabled(),
            }
            page.evaluate("() => window.__paddleComplete()")
            seen["after_completion"] = page.inner_text("#checkout-status")
            seen["button_hidden"] = page.is_hidden("#open-checkout")
            return seen
        finally:
            browser.close()


@pytest.mark.browser
def test_failure_to_one_email_to_click_to_paddle_checkout_page_to_recovery_with_attribution(
    database_url: str, paddle_app: Any, paddle_standin: PaddleStandIn, loops_standin: Any
) -> None:
    app = paddle_app(database_url)
    _, sub, txn = failing_subscription(paddle_standin)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    failed = paddle_standin.event("transaction.payment_failed", txn, occurred_at=an_hour_ago)

    assert deliver(app, failed).status_code == 200
    [email] = wait_for(lambda: loops_standin.messages, what="the Loops email")
    # The same failure reported three more ways, and redelivered: still one case, one email.
    assert deliver(app, paddle_standin.event("transaction.past_due", txn)).status_code == 200
    assert deliver(app, paddle_standin.event("subscription.past_due", sub)).status_code == 200
    duplicate = deliver(app, failed)
    assert duplicate.status_code == 200 and duplicate.json()["duplicate"] is True
    wait_for(lambda: count(database_url, Event) == 3 and all(e.status == "done" for e in rows(database_url, Event)))
    time.sleep(1.0)
    assert len(loops_standin.messages) == 1
    [case] = rows(database_url, DunningCase)
    assert (case.provider, case.invoice_id, case.customer_email) == ("paddle", txn["id"], "ada@example.com")

    body = email["body"]
    assert body["email"] == "ada@example.com"
    data = body["dataVariables"]
    assert data["amountDue"] == "$49.00" and data["invoiceId"] == txn["id"]
    assert data["updatePaymentUrl"].startswith(f"{app.url}/r/")
    assert not any("update-payment-method-transaction" in r["path"] for r in paddle_standin.requests)

    seen = open_update_page_in_chromium(data["updatePaymentUrl"])

    # Minted at click time: the update-payment-method transaction was asked for when the link was followed.
    assert [r for r in paddle_standin.requests if r["path"].endswith("/update-payment-method-transaction")]
    assert seen["status"] == 200 and seen["url"].startswith(f"{app.url}/pay/paddle/")
    names = [c["name"] for c in seen["calls"]]
    assert names == ["Environment.set", "Initialize", "Checkout.open"]
    assert seen["calls"][0]["args"] == "sandbox"
    assert seen["calls"][1]["args"] == {"token": CLIENT_TOKEN}
    assert seen["calls"][2]["args"]["transactionId"] == txn["id"]
    assert seen["violations"] == [] and seen["console_errors"] == []
    assert f"script-src 'self' {paddle_standin.base_url}" in seen["csp"] and "unsafe-inline" not in seen["csp"]
    assert seen["lang"] == "en" and seen["brand"] == "Acme Cloud" and seen["button"] is True
    assert seen["h1"] == "Update your payment method"
    assert "$49.00" in seen["text"] and "Acme Cloud" in seen["text"]
    assert seen["after_completion"].startswith("Thank you") and seen["button_hidden"] is True
    [click] = rows(database_url, Click)
    assert (click.provider, click.update_link_id) == ("paddle", txn["id"])

    paid = paddle_standin.pay_transaction(txn["id"])
    assert deliver(app, paddle_standin.event("transaction.completed", paid)).status_code == 200
    [entry] = wait_for(lambda: rows(database_url, LedgerEntry), what="the ledger entry")
    assert (entry.provider, entry.amount, entry.currency, entry.attribution) == ("paddle", 4900, "usd", "link_click")
    assert 3600 <= entry.seconds_to_recover <= 3700
    assert len(loops_standin.messages) == 1

    # Finance sees it through the shared core: filtered by provider, linked into Paddle's sandbox dashboard.
    auth = ("finance", FINANCE_PASSWORD)
    listed = requests.get(f"{app.url}/finance/recoveries.json?provider=paddle&mode=test", auth=auth, timeout=5)
    [row] = listed.json()["data"]
    assert (row["provider"], row["invoice_id"], row["amount"], row["attribution"]) == (
        "paddle",
        txn["id"],
        "49.00",
        "link_click",
    )
    assert row["invoice_url"] == f"https://sandbox-vendors.paddle.com/transactions-v2/{txn['id']}"
    stripe_only = requests.get(f"{app.url}/finance/recoveries.json?provider=stripe", auth=auth, timeout=5)
    assert stripe_only.json()["data"] == []
    report = app.command("report", "--format", "json", "--mode", "test")
    assert report.returncode == 0, report.stderr
    [usd] = json.loads(report.stdout)["currencies"]
    assert (usd["currency"], usd["recovered_net_minor"], usd["link_click_count"]) == ("usd", 4900, 1)


def test_completed_before_its_failure_arrives_messages_nobody_and_books_one_recovery(
    database_url: str, paddle_app: Any, paddle_standin: PaddleStandIn, loops_standin: Any
) -> None:
    app = paddle_app(database_url)
    _, _, txn = failing_subscription(paddle_standin)
    failed = paddle_standin.event("transaction.payment_failed", txn, occurred_at=datetime.now(UTC) - timedelta(hours=2))
    paid = paddle_standin.pay_transaction(txn["id"])
    completed = paddle_standin.event("transaction.completed", paid)
    paid_event = paddle_standin.event("transaction.paid", paid)

    # Paddle does not promise order: the payment events come first, then the failure they follow.
    for event in (completed, paid_event, failed, completed):
        assert deliver(app, event).status_code == 200
    [entry] = wait_for(lambda: rows(database_url, LedgerEntry), what="the ledger entry")
    wait_for(lambda: all(e.status == "done" for e in rows(database_url, Event)), what="every event processed")
    time.sleep(1.0)
    assert (entry.provider, entry.amount, entry.attribution) == ("paddle", 4900, "provider_retry")
    assert loops_standin.messages == []
    assert len(rows(database_url, LedgerEntry)) == 1


def test_bad_signatures_are_refused_with_400_and_nothing_is_stored(
    paddle_app: Any, sqlite_url: str, paddle_standin: PaddleStandIn
) -> None:
    app = paddle_app(sqlite_url)
    _, _, txn = failing_subscription(paddle_standin)
    event = paddle_standin.event("transaction.payment_failed", txn)
    body, headers = signed_webhook(event, secret="pdl_ntfset_someone_else")
    forged = requests.post(f"{app.url}/webhooks/paddle", data=body, headers=headers, timeout=5)
    body, headers = signed_webhook(event)
    tampered = requests.post(f"{app.url}/webhooks/paddle", data=body.replace(b"4900", b"1"), headers=headers, timeout=5)
    stale_body, stale_headers = signed_webhook(event, ts=int(time.time()) - 3600)
    stale = requests.post(f"{app.url}/webhooks/paddle", data=stale_body, headers=stale_headers, timeout=5)
    unsigned = requests.post(f"{app.url}/webhooks/paddle", data=body, timeout=5)

    for response in (forged, tampered, stale, unsigned):
        assert response.status_code == 400, response.text
        assert WEBHOOK_SECRET not in response.text
    assert "no valid signature" in forged.json()["message"] and "too old" in stale.json()["message"]
    assert count(sqlite_url, Event) == 0
    assert not paddle_standin.requests  # nothing was fetched for a refused delivery


def test_campaign_for_paddle_messages_each_past_due_customer_once(
    paddle_app: Any, sqlite_url: str, paddle_standin: PaddleStandIn, loops_standin: Any
) -> None:
    app = paddle_app(sqlite_url, WORKER_MODE="external")  # the campaign sends, as an operator runs it
    failing_subscription(paddle_standin)
    grace = paddle_standin.add_customer("grace@example.com", "Grace Hopper")
    paddle_standin.fail_renewal(paddle_standin.add_subscription(grace["id"], unit_amount=500, currency="JPY")["id"])
    checkout = paddle_standin.add_customer("new@example.com", "Just Looking")
    paddle_standin.add_transaction(checkout["id"], origin="web")  # a declined checkout: not dunning

    dry = app.command("campaign", "--provider", "paddle", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "a***@example.com" in dry.stdout and "g***@example.com" in dry.stdout
    assert "n***@example.com" not in dry.stdout and "ada@example.com" not in dry.stdout

    sent = app.command("campaign", "--provider", "paddle")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: len(loops_standin.messages) == 2, what="two campaign emails")
    assert sorted(m["body"]["dataVariables"]["amountDue"] for m in loops_standin.messages) == ["$49.00", "¥500"]
    rerun = app.command("campaign", "--provider", "paddle")
    assert rerun.returncode == 0, rerun.stderr
    time.sleep(1.0)
    assert len(loops_standin.messages) == 2
