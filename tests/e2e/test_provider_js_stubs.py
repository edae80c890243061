"""The Paddle.js and Drop-in stubs the stand-ins serve, in headless Chromium: the update pages' browser
tests will load them instead of Paddle's and Braintree's CDNs, so they must behave like the real APIs
the pages call (Paddle.Environment.set / Initialize / Checkout.open with an eventCallback;
braintree.dropin.create -> requestPaymentMethod -> {nonce}).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_finance_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.standins import serve
from tests.standins.braintree import BraintreeStandIn
from tests.standins.paddle import PaddleStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page_with() -> Iterator[Any]:
    """A function loading HTML that includes one stand-in script; yields the Playwright page."""
    sync_playwright = _playwright()
    paddle, braintree = PaddleStandIn(), BraintreeStandIn()
    served = [serve(paddle.app), serve(braintree.app)]
    urls = {"paddle": f"{served[0].url}/paddle.js", "dropin": f"{served[1].url}/dropin.min.js"}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()

            def load(script: str, body: str = "") -> Any:
                page.set_content(f'<html><body>{body}<script src="{urls[script]}"></script></body></html>')
                return page

            yield load
            browser.close()
    finally:
        for server in served:
            server.stop()


def test_paddle_js_stub_records_calls_and_fires_checkout_completed(page_with):
    page = page_with("paddle")
    events = page.evaluate(
        """() => {
            const events = [];
            Paddle.Environment.set("sandbox");
            Paddle.Initialize({token: "test_client_token", eventCallback: (e) => events.push(e)});
            Paddle.Checkout.open({transactionId: "txn_01hs0001"});
            window.__paddleComplete();
            return events;
        }"""
    )
    assert [e["name"] for e in events] == ["checkout.loaded", "checkout.completed"]
    assert events[-1]["data"]["transaction_id"] == "txn_01hs0001"
    calls = page.evaluate("() => window.__paddleCalls")
    assert [c["name"] for c in calls] == ["Environment.set", "Initialize", "Checkout.open"]
    assert calls[1]["args"] == {"token": "test_client_token"}
    assert calls[2]["args"] == {"transactionId": "txn_01hs0001"}


def test_paddle_js_stub_refuses_a_second_initialize_like_paddle(page_with):
    page = page_with("paddle")
    error = page.evaluate(
        """() => {
            Paddle.Initialize({token: "test_a"});
            try { Paddle.Initialize({token: "test_b"}); return null; } catch (e) { return e.message; }
        }"""
    )
    assert "only once" in error


def test_dropin_stub_resolves_the_test_nonce_from_the_container(page_with):
    page = page_with("dropin", '<div id="dropin" data-test-nonce="fake-valid-nonce"></div>')
    result = page.evaluate(
        """async () => {
            const instance = await braintree.dropin.create({authorization: "client-token", container: "#dropin"});
            return await instance.requestPaymentMethod();
        }"""
    )
    assert result["nonce"] == "fake-valid-nonce"
    assert page.evaluate("() => window.__dropinCalls[0].authorization") == "client-token"


def test_dropin_stub_falls_back_to_window_test_nonce_and_rejects_without_one(page_with):
    page = page_with("dropin", '<div id="dropin"></div>')
    outcome = page.evaluate(
        """async () => {
            const instance = await braintree.dropin.create({authorization: "t", container: "#dropin"});
            let missing = null;
            try { await instance.requestPaymentMethod(); } catch (e) { missing = e.message; }
            window.__testNonce = "fake-processor-declined-visa-nonce";
            const declined = await instance.requestPaymentMethod();
            return {missing, nonce: declined.nonce};
        }"""
    )
    assert outcome == {"missing": "No payment method is available.", "nonce": "fake-processor-declined-visa-nonce"}
