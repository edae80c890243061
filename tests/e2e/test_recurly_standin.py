"""RecurlyClient against the Recurly stand-in served on a real socket: the two agree on the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes import FakeTime
from tests.standins import Faults, serve
from tests.standins.recurly import RecurlyStandIn
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import ConfigurationNeeded, ResourceMissing, TransientError
from webhook_app.providers.recurly.client import RecurlyClient, RecurlyRefused, to_minor_units
from webhook_app.providers.recurly.webhook import parse_envelope, verify_signature

pytestmark = pytest.mark.e2e


@pytest.fixture
def standin() -> Iterator[RecurlyStandIn]:
    standin = RecurlyStandIn(faults=Faults())
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


def client_for(standin: RecurlyStandIn, api_key: str | None = None) -> RecurlyClient:
    fake = FakeTime()  # the bucket's waits are simulated; the HTTP is real
    return RecurlyClient(
        api_key=api_key or standin.api_key,
        base_url=standin.url,
        hosted_base_url=standin.url,
        timeout=5,
        bucket=TokenBucket(100, clock=fake.clock, sleep=fake.sleep),
    )


def test_client_and_stand_in_agree_on_list_retrieve_collect_and_the_billing_page(standin):
    ada = standin.add_account("ada", email="ada@example.com", card_works=False)
    standin.add_account("bob", email="bob@example.com")
    first = standin.add_invoice("ada", total="49.99")
    standin.add_invoice("ada", total=500, currency="JPY")
    standin.add_invoice("ada", state="paid", total="10.00", paid="10.00")
    for n in range(450):  # enough past-due invoices for three pages of 200
        standin.add_invoice("bob", total=f"{n}.05")
    client = client_for(standin)

    # list: every page, only past_due, one account's when asked
    every = list(client.list_past_due_invoices())
    adas = list(client.list_past_due_invoices(account_id="code-ada"))
    assert len(every) == 2 + 450
    assert len({invoice["id"] for invoice in every}) == len(every)
    assert {invoice["state"] for invoice in every} == {"past_due"}
    assert [to_minor_units(i["balance"], i["currency"]) for i in adas] == [4999, 500]
    assert sum(to_minor_units(i["total"], i["currency"]) for i in every if i["account"]["code"] == "bob") == sum(
        n * 100 + 5 for n in range(450)
    )

    # retrieve by id, number and code
    assert client.get_invoice(first["id"])["number"] == first["number"]
    assert client.get_invoice(f"number-{first['number']}")["id"] == first["id"]
    account = client.get_account("code-ada")
    assert account["id"] == ada["id"]
    assert account["has_past_due_invoice"] is True
    assert account["address"]["country"] == "US"
    assert client.check_credentials() == "Recurly site acme (sandbox): API key accepted"

    # collection: a decline is permanent with its codes; after a card update it pays
    with pytest.raises(RecurlyRefused) as declined:
        client.collect_invoice(first["id"])
    assert declined.value.transaction_error["decline_code"] == "insufficient_funds"
    standin.update_billing_info(ada["id"])
    paid = client.collect_invoice(first["id"])
    assert (paid["state"], to_minor_units(paid["balance"], paid["currency"])) == ("paid", 0)
    with pytest.raises(RecurlyRefused):
        client.collect_invoice(first["id"])  # a second collection is refused, never charged twice
    assert [c["outcome"] for c in standin.collections] == ["declined", "paid", "refused"]

    # the hosted billing-info page an email link lands on
    url = client.billing_info_url(standin.subdomain, account["hosted_login_token"])
    landed = requests.get(url, timeout=5)
    assert landed.status_code == 200
    assert "update billing information" in landed.text
    assert standin.page_visits == [account["hosted_login_token"]]

    # 404 -> ResourceMissing naming what is missing
    with pytest.raises(ResourceMissing) as missing_invoice:
        client.get_invoice("number-999999")
    assert missing_invoice.value.kind == "invoice"
    with pytest.raises(ResourceMissing) as missing_account:
        list(client.list_past_due_invoices(account_id="code-nobody"))
    assert missing_account.value.kind == "account"


def test_an_injected_429_is_transient_and_pauses_the_bucket(standin):
    standin.add_account("ada")
    client = client_for(standin)
    standin.faults.throttle_rate = 1.0

    with pytest.raises(TransientError) as exc_info:
        client.get_account("code-ada")

    # No Retry-After: the wait runs until the stand-in's X-RateLimit-Reset (now + 1 s, whole seconds).
    assert 0 <= exc_info.value.retry_after <= 1.0
    standin.faults.throttle_rate = 0.0
    assert client.get_account("code-ada")["code"] == "ada"


def test_an_injected_500_is_transient(standin):
    standin.faults.error_rate = 1.0
    with pytest.raises(TransientError, match="500"):
        client_for(standin).get_invoice("i1")


def test_a_wrong_api_key_asks_for_configuration(standin):
    with pytest.raises(ConfigurationNeeded, match="RECURLY_API_KEY"):
        client_for(standin, api_key="ffffffffffffffffffffffffffffffff").get_invoice("i1")


def test_a_missing_version_header_is_refused_by_the_stand_in(standin):
    response = requests.get(f"{standin.url}/invoices", auth=(standin.api_key, ""), timeout=5)
    assert response.status_code == 406
    assert response.json()["error"]["type"] == "invalid_api_version"


def test_a_stand_in_signed_webhook_verifies_and_parses(standin):
    payload = standin.notification("charge_invoice", "past_due", invoice_number=1001)
    body, headers = standin.signed_webhook(payload, "endpoint-secret")
    verify_signature(body, headers["recurly-signature"], ("endpoint-secret",))
    assert parse_envelope(body) == payload
