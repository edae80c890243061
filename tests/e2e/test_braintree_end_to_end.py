"""Braintree end to end: gunicorn, the XML stand-in gateway, Loops, SQLite or PostgreSQL, and our update
page in headless Chromium (Drop-in is the stand-in's stub of Braintree's script, loaded under the page's
own Content-Security-Policy).

failure -> one message with our /r/ link -> click -> /pay/braintree/<token> -> a test nonce -> the card is
saved, the subscription moved onto it and charged once (even on a double submit) -> Braintree's webhook ->
one ledger row with `provider` and the link's attribution.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import braintree
import pytest
import requests

from tests.e2e.conftest import serving
from tests.e2e.test_finance_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.e2e.test_recovery_end_to_end import BROWSER, ledger
from tests.standins.braintree import MERCHANT_ID, PRIVATE_KEY, PUBLIC_KEY, BraintreeStandIn
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
KIND = braintree.WebhookNotification.Kind
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def bt() -> Iterator[BraintreeStandIn]:
    with serving(BraintreeStandIn()) as standin:
        standin.add_customer("cust_ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
        standin.add_subscription("cust_ada", subscription_id="sub_ada", price="49.99")
        standin.fail_charge("sub_ada")
        yield standin


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium with a phone-sized window and a normal browser's user agent (a headless one is
    treated as a link previewer, which gets no update page)."""
    sync_playwright = _playwright()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = chromium.new_context(user_agent=BROWSER["User-Agent"], viewport=PHONE, is_mobile=True)
        try:
            yield context
        finally:
            chromium.close()


def start(live_app, database_url: str, bt: BraintreeStandIn, loops_standin) -> Any:
    return live_app(
        database_url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops_standin.api_key,
        LOOPS_API_BASE=f"{loops_standin.url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        BRAINTREE_MERCHANT_ID=MERCHANT_ID,
        BRAINTREE_PUBLIC_KEY=PUBLIC_KEY,
        BRAINTREE_PRIVATE_KEY=PRIVATE_KEY,
        BRAINTREE_ENVIRONMENT="sandbox",
        BRAINTREE_API_BASE=bt.url,
    )


def notify(app, bt: BraintreeStandIn, kind: str, form: dict[str, str] | None = None) -> requests.Response:
    """Deliver a notification about Ada's subscription (or resend `form`) as Braintree does."""
    form = form or bt.sample_notification(kind, "sub_ada")
    return requests.post(f"{app.url}/webhooks/braintree", data=form, timeout=5)


def open_update_page(context, url: str) -> tuple[Any, list[str]]:
    """Follow the emailed link in the browser; the page (Drop-in ready) and the CSP violations it logs."""
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(url)
    assert response is not None and response.status == 200
    assert "/pay/braintree/" in page.url
    page.wait_for_selector("#dropin[data-dropin-ready=true]")
    page.wait_for_selector("#pay-button:not([disabled])")
    return page, violations


def emailed_link(app, bt, loops_standin) -> str:
    charged_unsuccessfully = bt.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada")
    assert notify(app, bt, KIND.SubscriptionWentPastDue).status_code == 200
    assert notify(app, bt, "", charged_unsuccessfully).status_code == 200
    [email] = wait_for(lambda: loops_standin.messages, what="the Loops email")
    assert notify(app, bt, "", charged_unsuccessfully).json()["duplicate"] is True  # Braintree's resend
    time.sleep(1.0)
    assert len(loops_standin.messages) == 1
    data = email["body"]["dataVariables"]
    assert data["amountDue"] == "$49.99" and data["customerName"] == "Ada Lovelace"
    assert data["updatePaymentUrl"].startswith(f"{app.url}/r/")
    return str(data["updatePaymentUrl"])


def test_failure_to_message_to_our_page_to_one_charge_to_the_ledger(live_app, database_url, bt, loops_standin, browser):
    app = start(live_app, database_url, bt, loops_standin)
    page, violations = open_update_page(browser, emailed_link(app, bt, loops_standin))

    # The page: the merchant's name, what is owed, an accessible button, no sideways scrolling on a phone.
    assert page.text_content(".brand") == "Acme Cloud"
    assert page.locator("h1").inner_text() == "Update your payment method"
    assert page.get_attribute("html", "lang") == "en"
    assert page.get_by_role("button", name="Pay $49.99").is_enabled()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    calls = page.evaluate("() => window.__dropinCalls")
    assert calls[0]["name"] == "create" and calls[0]["authorization"]  # a client token for the customer
    page.screenshot(path="/tmp/braintree-update-page.png", full_page=True)

    # A double submit: the same rendered form posted twice at once, and the customer's own click.
    form = {"payment_method_nonce": "fake-valid-nonce", "form_key": page.input_value("input[name=form_key]")}
    posts: list[int] = []

    def post_again() -> None:
        posts.append(requests.post(page.url, data=form, allow_redirects=False, timeout=30).status_code)

    twins = [threading.Thread(target=post_again) for _ in range(2)]
    for twin in twins:
        twin.start()
    page.evaluate("() => { window.__testNonce = 'fake-valid-nonce'; }")
    page.click("#pay-button")
    for twin in twins:
        twin.join(timeout=30)
    page.wait_for_selector("text=your payment went through", timeout=20_000)
    assert "$49.99" in page.text_content("main") and "Visa ending 1111" in page.text_content("main")
    assert len(bt.charges) == 1 and bt.charges[0]["ok"]  # one charge, whatever the repeats
    assert set(posts) <= {202, 303}
    assert bt.subscriptions["sub_ada"]["payment_method_token"] == bt.charges[0]["token"]
    assert violations == []  # Drop-in's script and ours ran under the page's policy

    # Braintree tells us too (the subscription went active again): still one ledger row.
    assert notify(app, bt, KIND.SubscriptionChargedSuccessfully).status_code == 200
    assert notify(app, bt, KIND.SubscriptionWentActive).status_code == 200
    time.sleep(1.0)
    [entry] = wait_for(lambda: ledger(database_url), what="the ledger entry")
    assert (entry.provider, entry.amount, entry.currency, entry.attribution) == ("braintree", 4999, "usd", "link_click")
    assert entry.first_click_at is not None and entry.invoice_id.startswith("sub_ada:")
    page.reload()
    assert "your payment went through" in page.text_content("main")
    assert len(bt.charges) == 1 and len(loops_standin.messages) == 1


def test_a_declined_card_shows_the_message_charges_nothing_and_another_card_pays(
    live_app, sqlite_url, bt, loops_standin, browser
):
    app = start(live_app, sqlite_url, bt, loops_standin)
    page, violations = open_update_page(browser, emailed_link(app, bt, loops_standin))

    page.evaluate("() => { window.__testNonce = 'fake-processor-declined-visa-nonce'; }")
    page.click("#pay-button")
    alert = page.wait_for_selector("[role=alert]")
    assert "Your bank declined this card" in alert.inner_text()
    assert bt.charges == []
    assert bt.subscriptions["sub_ada"]["status"] == "Past Due"

    # The form is back, with Drop-in ready: the customer tries another card.
    page.wait_for_selector("#pay-button:not([disabled])")
    page.evaluate("() => { window.__testNonce = 'fake-valid-mastercard-nonce'; }")
    page.click("#pay-button")
    page.wait_for_selector("text=your payment went through", timeout=20_000)
    assert "MasterCard ending 4444" in page.text_content("main")
    assert [c["ok"] for c in bt.charges] == [True]
    assert violations == []
