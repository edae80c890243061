"""ChargebeeBilling (the runtime port) over ChargebeeClient against requests-mock: which calls each port
method makes, the hosted page chosen at click time, and the listing the campaign reads."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock

from tests.fakes import FakeTime
from webhook_app import domain
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import PermanentError, TransientError
from webhook_app.providers.base import LinkTarget
from webhook_app.providers.chargebee.billing import LIST_RETRIES, ChargebeeBilling
from webhook_app.providers.chargebee.client import DEFAULT_RATE_PER_SECOND, ChargebeeClient

BASE = "https://acme-test.chargebee.com/api/v2"
RETURN_URL = "https://app.example.test/billing"
TARGET = LinkTarget(case_id=1, customer_id="cust_ada", invoice_id="inv_1", subscription_id="sub_1", currency="usd")


def invoice(invoice_id: str = "inv_1", customer_id: str = "cust_ada", **fields) -> dict:
    return {
        "id": invoice_id,
        "customer_id": customer_id,
        "subscription_id": "sub_1",
        "status": "payment_due",
        "currency_code": "USD",
        "total": 4900,
        "amount_paid": 0,
        "amount_due": 4900,
        "dunning_status": "in_progress",
        "next_retry_at": 1_790_259_200,
        "dunning_attempts": [{"attempt": 0, "txn_status": "failure", "dunning_type": "auto_collect"}],
        "object": "invoice",
        **fields,
    }


def customer(customer_id: str = "cust_ada", email: str = "ada@example.com") -> dict:
    return {
        "id": customer_id,
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "auto_collection": "on",
        "billing_address": {"country": "GB", "object": "billing_address"},
        "object": "customer",
    }


def hosted_page(page_type: str, page_id: str = "hp_1") -> dict:
    return {
        "hosted_page": {
            "id": page_id,
            "type": page_type,
            "url": f"https://acme-test.chargebee.com/pages/v3/{page_id}/",
            "state": "created",
            "expires_at": 1_790_432_000,
            "object": "hosted_page",
        }
    }


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def billing(fake_time: FakeTime, *, durable_links: bool = True, livemode: bool = False) -> ChargebeeBilling:
    client = ChargebeeClient(
        api_key="test_cbKey0123456789",
        site="acme-test",
        session=requests.Session(),
        bucket=TokenBucket(DEFAULT_RATE_PER_SECOND, clock=fake_time.clock, sleep=fake_time.sleep),
        sleep=fake_time.sleep,
    )
    return ChargebeeBilling(client, livemode=livemode, return_url=RETURN_URL, durable_links=durable_links)


def paths(http) -> list[str]:
    return [f"{r.method} {urlsplit(r.url).path.removeprefix('/api/v2')}" for r in http.request_history]


# -- retrieve_invoice -----------------------------------------------------------------------------------


def test_an_owed_invoice_is_read_with_its_customer(http, fake_time):
    http.get(f"{BASE}/invoices/inv_1", json={"invoice": invoice()})
    http.get(f"{BASE}/customers/cust_ada", json={"customer": customer()})

    view = billing(fake_time).retrieve_invoice("inv_1")

    assert (view.provider, view.id, view.status, view.remaining) == ("chargebee", "inv_1", domain.OPEN, 4900)
    assert (view.customer_email, view.customer_name, view.customer_country) == ("ada@example.com", "Ada Lovelace", "GB")
    assert paths(http) == ["GET /invoices/inv_1", "GET /customers/cust_ada"]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"status": "paid", "amount_paid": 4900, "amount_due": 0, "paid_at": 1_790_000_000}, domain.PAID),
        ({"status": "voided", "amount_due": 0}, domain.VOID),
        ({"status": "paid", "amount_due": 0, "write_off_amount": 4900}, domain.UNCOLLECTIBLE),
    ],
)
def test_a_settled_invoice_is_read_without_its_customer(http, fake_time, fields, status):
    http.get(f"{BASE}/invoices/inv_1", json={"invoice": invoice(**fields)})
    view = billing(fake_time).retrieve_invoice("inv_1")
    assert view.status == status and view.is_closed
    assert paths(http) == ["GET /invoices/inv_1"]  # a settled invoice is never messaged: one call saved


# -- update_link ----------------------------------------------------------------------------------------


def test_a_click_with_invoices_due_mints_a_collect_now_page(http, fake_time):
    http.get(f"{BASE}/invoices", json={"list": [{"invoice": invoice()}]})
    http.post(f"{BASE}/hosted_pages/collect_now", json=hosted_page("collect_now"))

    link = billing(fake_time).update_link(TARGET)

    assert link is not None and (link.url, link.reference) == ("https://acme-test.chargebee.com/pages/v3/hp_1/", "hp_1")
    listing, mint = http.request_history
    assert parse_qs(urlsplit(listing.url).query)["customer_id[is]"] == ["cust_ada"]
    assert parse_qs(urlsplit(listing.url).query)["limit"] == ["1"]  # only whether anything is due
    assert parse_qs(mint.text) == {"customer[id]": ["cust_ada"], "redirect_url": [RETURN_URL]}
    assert "chargebee-idempotency-key" not in mint.headers  # every click gets its own page


def test_a_click_with_nothing_due_mints_a_manage_payment_sources_page(http, fake_time):
    http.get(f"{BASE}/invoices", json={"list": []})
    http.post(f"{BASE}/hosted_pages/manage_payment_sources", json=hosted_page("manage_payment_sources", "hp_2"))

    link = billing(fake_time).update_link(TARGET)

    assert link is not None and link.reference == "hp_2"
    assert paths(http) == ["GET /invoices", "POST /hosted_pages/manage_payment_sources"]


def test_an_email_with_our_durable_link_gets_no_hosted_page_of_its_own(http, fake_time):
    assert billing(fake_time, durable_links=True).update_link(TARGET, idempotency_key="k", for_email=True) is None
    assert http.call_count == 0


def test_without_public_url_the_email_carries_a_page_minted_with_the_notifications_key(http, fake_time):
    http.get(f"{BASE}/invoices", json={"list": [{"invoice": invoice()}]})
    http.post(f"{BASE}/hosted_pages/collect_now", json=hosted_page("collect_now"))

    link = billing(fake_time, durable_links=False).update_link(
        TARGET, idempotency_key="webhook-app-notification-7-portal", for_email=True
    )

    assert link is not None and link.reference == "hp_1"
    assert http.last_request.headers["chargebee-idempotency-key"] == "webhook-app-notification-7-portal"


def test_a_hosted_page_without_a_url_is_a_permanent_error(http, fake_time):
    http.get(f"{BASE}/invoices", json={"list": []})
    page = hosted_page("manage_payment_sources")
    del page["hosted_page"]["url"]
    http.post(f"{BASE}/hosted_pages/manage_payment_sources", json=page)
    with pytest.raises(PermanentError, match="without a URL"):
        billing(fake_time).update_link(TARGET)


# -- list_unpaid_invoices -------------------------------------------------------------------------------


def test_listing_reads_each_customer_once_however_many_invoices_they_owe(http, fake_time):
    http.get(
        f"{BASE}/invoices",
        [
            {"json": {"list": [{"invoice": invoice("inv_1")}, {"invoice": invoice("inv_2")}], "next_offset": "o1"}},
            {"json": {"list": [{"invoice": invoice("inv_3", "cust_bob")}, {"invoice": invoice("inv_4")}]}},
        ],
    )
    http.get(f"{BASE}/customers/cust_ada", json={"customer": customer()})
    http.get(f"{BASE}/customers/cust_bob", json={"customer": customer("cust_bob", "bob@example.com")})

    views = list(billing(fake_time, livemode=True).list_unpaid_invoices())

    assert [(v.id, v.customer_email) for v in views] == [
        ("inv_1", "ada@example.com"),
        ("inv_2", "ada@example.com"),
        ("inv_3", "bob@example.com"),
        ("inv_4", "ada@example.com"),
    ]
    assert all(v.livemode and v.attempt_count == 1 and v.status == domain.OPEN for v in views)
    assert paths(http).count("GET /customers/cust_ada") == 1


def test_a_throttled_page_is_asked_for_again_after_chargebees_wait(http, fake_time):
    throttled = {"status_code": 429, "json": {"api_error_code": "api_request_limit_exceeded", "message": "slow down"}}
    http.get(
        f"{BASE}/invoices",
        [
            {"json": {"list": [{"invoice": invoice("inv_1")}], "next_offset": "o1"}},
            {**throttled, "headers": {"Retry-After": "7"}},
            {"json": {"list": [{"invoice": invoice("inv_2")}]}},
        ],
    )
    http.get(f"{BASE}/customers/cust_ada", [throttled, {"json": {"customer": customer()}}])

    views = list(billing(fake_time).list_unpaid_invoices())

    assert [v.id for v in views] == ["inv_1", "inv_2"]
    assert 7 in fake_time.sleeps  # Chargebee's Retry-After, honoured before asking for the page again
    offsets = [parse_qs(urlsplit(r.url).query).get("offset") for r in http.request_history if "invoices" in r.url]
    assert offsets == [None, ["o1"], ["o1"]]  # the same page again, not the listing from the start


def test_a_listing_read_that_keeps_failing_gives_up_after_its_retries(http, fake_time):
    http.get(f"{BASE}/invoices", status_code=503, json={"message": "down"})
    with pytest.raises(TransientError):
        list(billing(fake_time).list_unpaid_invoices())
    assert http.call_count == LIST_RETRIES + 1
