"""ChargebeeClient against the Chargebee stand-in served on a real socket: the two agree on the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes import FakeTime
from tests.standins import Faults, serve
from tests.standins.chargebee import ChargebeeStandIn
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import ConfigurationNeeded, ResourceMissing, TransientError
from webhook_app.providers.chargebee.client import ChargebeeClient
from webhook_app.providers.chargebee.webhook import parse_envelope

pytestmark = pytest.mark.e2e


@pytest.fixture
def standin() -> Iterator[ChargebeeStandIn]:
    standin = ChargebeeStandIn(faults=Faults())
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


def client_for(standin: ChargebeeStandIn, api_key: str | None = None) -> ChargebeeClient:
    fake = FakeTime()  # the bucket's waits are simulated; the HTTP is real
    return ChargebeeClient(
        api_key=api_key or standin.api_key,
        base_url=f"{standin.url}/api/v2",
        timeout=5,
        bucket=TokenBucket(100, clock=fake.clock, sleep=fake.sleep),
    )


def test_client_and_stand_in_agree_on_list_retrieve_hosted_pages_and_errors(standin):
    ada = standin.add_customer("cust_ada", email="ada@example.com")
    bob = standin.add_customer("cust_bob", email="bob@example.com")
    standin.add_subscription("sub_ada", customer_id=ada["id"])
    due = [standin.add_invoice(customer_id=ada["id"], subscription_id="sub_ada", amount_due=n) for n in range(1, 4)]
    standin.add_invoice(customer_id=ada["id"], status="not_paid", dunning_status="exhausted")
    standin.add_invoice(customer_id=ada["id"], status="paid", amount_due=0, dunning_status=None)
    standin.add_invoice(customer_id=bob["id"])
    for n in range(150):  # enough unpaid invoices for two pages of 100
        standin.add_invoice(customer_id=bob["id"], amount_due=100 + n)
    event = standin.add_invoice_event("payment_failed", due[0]["id"])
    client = client_for(standin)

    # list: every page, only what is still being collected, one customer's when asked
    every_unpaid = list(client.list_unpaid_invoices())
    adas = list(client.list_unpaid_invoices(customer_id=ada["id"]))
    assert len(every_unpaid) == 3 + 1 + 1 + 150
    assert len({invoice["id"] for invoice in every_unpaid}) == len(every_unpaid)
    assert {invoice["status"] for invoice in every_unpaid} == {"payment_due", "not_paid"}
    assert [invoice["amount_due"] for invoice in adas[:3]] == [1, 2, 3]
    assert all(invoice["customer_id"] == ada["id"] for invoice in adas)

    # retrieve
    assert client.retrieve_invoice(due[0]["id"])["dunning_attempts"][0]["txn_status"] == "failure"
    assert client.retrieve_customer(ada["id"])["email"] == "ada@example.com"
    assert client.retrieve_subscription("sub_ada")["customer_id"] == ada["id"]
    fetched = client.retrieve_event(event["id"])
    assert fetched == parse_envelope(standin.webhook_body(event))
    assert client.check_credentials() == "Chargebee site acme-test: API key accepted, product catalog v2"

    # hosted pages: minted on demand, URL served by the stand-in
    assert standin.hosted_pages == []
    page = client.collect_now_page(ada["id"], redirect_url="https://pay.example.com/thanks")
    manage = client.manage_payment_sources_page(ada["id"])
    assert [record["type"] for record in standin.hosted_pages] == ["collect_now", "manage_payment_sources"]
    assert standin.hosted_pages[0]["form"]["redirect_url"] == "https://pay.example.com/thanks"
    assert manage["type"] == "manage_payment_sources"
    landed = requests.get(page["url"], timeout=5)
    assert landed.status_code == 200
    assert page["id"] in landed.text
    assert standin.page_visits == [page["id"]]

    # 404 -> ResourceMissing naming what is missing
    with pytest.raises(ResourceMissing) as missing_invoice:
        client.retrieve_invoice("inv_nope")
    assert missing_invoice.value.kind == "invoice"
    with pytest.raises(ResourceMissing) as missing_customer:
        client.collect_now_page("cust_nope")
    assert missing_customer.value.kind == "customer"


def test_an_injected_429_is_transient_and_pauses_the_bucket(standin):
    standin.add_customer("cust_ada")
    client = client_for(standin)
    standin.faults.throttle_rate = 1.0

    with pytest.raises(TransientError) as exc_info:
        client.retrieve_customer("cust_ada")

    assert exc_info.value.retry_after == 1  # the stand-in's Retry-After
    assert client.bucket.acquire() == pytest.approx(1)
    standin.faults.throttle_rate = 0.0
    assert client.retrieve_customer("cust_ada")["id"] == "cust_ada"


def test_an_injected_500_is_transient(standin):
    standin.faults.error_rate = 1.0
    with pytest.raises(TransientError, match="500"):
        client_for(standin).retrieve_invoice("inv_1")


def test_a_wrong_api_key_asks_for_configuration(standin):
    with pytest.raises(ConfigurationNeeded, match="CHARGEBEE_API_KEY"):
        client_for(standin, api_key="test_wrong_key_0000").retrieve_invoice("inv_1")


def test_a_repeated_idempotency_key_gets_the_same_hosted_page_back(standin):
    standin.add_customer("cust_ada")
    client = client_for(standin)

    first = client.collect_now_page("cust_ada", idempotency_key="webhook-app-notification-1-portal")
    again = client.collect_now_page("cust_ada", idempotency_key="webhook-app-notification-1-portal")
    other = client.collect_now_page("cust_ada")

    assert again == first and other["id"] != first["id"]
    assert len(standin.hosted_pages) == 2 and standin.idempotent_replays == 1
