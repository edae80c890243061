"""`ChargebeeProvider`, the port the core sees: intake (basic auth, envelope), translation of a stored
event from the API's copy, dashboard links and what it needs configured."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from tests.standins.chargebee import ChargebeeStandIn
from tests.unit.test_chargebee_translate import ApiCopy
from webhook_app.config import load_settings
from webhook_app.domain import PaymentFailed
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.providers import build_providers
from webhook_app.providers.base import Billing, Provider, StoredEvent
from webhook_app.providers.chargebee import ChargebeeProvider
from webhook_app.providers.chargebee.billing import ChargebeeBilling
from webhook_app.providers.chargebee.translate import UnconfirmedEvent

USERNAME, PASSWORD = "cb-hooks", "a-long-random-webhook-password"
SETTINGS = {
    "CHARGEBEE_SITE": "acme-test",
    "CHARGEBEE_API_KEY": "test_cbKey0123456789abcdef",
    "CHARGEBEE_WEBHOOK_USERNAME": USERNAME,
    "CHARGEBEE_WEBHOOK_PASSWORD": PASSWORD,
    "PUBLIC_URL": "https://recover.example.test",
}


def basic(username: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def provider(client=None, **overrides: str) -> ChargebeeProvider:
    return ChargebeeProvider(load_settings({**SETTINGS, **overrides}), client=client)


@pytest.fixture
def cb() -> ChargebeeStandIn:
    standin = ChargebeeStandIn()
    standin.add_customer("cust_ada", email="ada@example.com")
    standin.add_invoice("inv_1", customer_id="cust_ada", amount_due=4900)
    return standin


def stored(event: dict, **changes) -> StoredEvent:
    return StoredEvent(
        provider="chargebee",
        event_id=event["id"],
        type=event["event_type"],
        livemode=False,
        api_version="v2",
        occurred_at=datetime.fromtimestamp(event["occurred_at"], UTC).replace(tzinfo=None),
        payload={**event, **changes},
    )


def test_the_registry_builds_it_as_a_provider_with_a_billing_port():
    built = build_providers(load_settings(SETTINGS))["chargebee"]
    assert isinstance(built, Provider) and isinstance(built.billing, Billing)
    assert isinstance(built.billing, ChargebeeBilling)
    assert built.enabled and built.missing_for_intake() == [] and built.missing_for_sending() == []


# -- intake ---------------------------------------------------------------------------------------------


def test_a_delivery_with_the_right_credentials_becomes_an_inbox_event(cb):
    event = cb.add_invoice_event("payment_failed", "inv_1", occurred_at=1_790_000_000)
    incoming = provider().receive(basic(), cb.webhook_body(event))
    assert (incoming.event_id, incoming.type, incoming.api_version) == (event["id"], "payment_failed", "v2")
    assert incoming.occurred_at == datetime(2026, 9, 21, 14, 13, 20)  # 1_790_000_000 in UTC
    assert incoming.livemode is False  # the -test site
    assert json.loads(incoming.payload) == event


def test_a_live_sites_deliveries_are_live(cb):
    event = cb.add_invoice_event("payment_failed", "inv_1")
    assert provider(CHARGEBEE_SITE="acme").receive(basic(), cb.webhook_body(event)).livemode is True


@pytest.mark.parametrize("headers", [{}, basic(password="guess"), basic(username="someone")])
def test_missing_or_wrong_credentials_are_refused_with_401(cb, headers):
    body = cb.webhook_body(cb.add_invoice_event("payment_failed", "inv_1"))
    with pytest.raises(WebhookRejected) as refused:
        provider().receive(headers, body)
    assert refused.value.status == 401


def test_credentials_are_checked_before_the_body_is_read():
    with pytest.raises(WebhookRejected) as refused:
        provider().receive(basic(password="guess"), b"not json")
    assert refused.value.status == 401


def test_a_body_that_is_json_but_not_utf8_is_refused(cb):
    event = cb.add_invoice_event("payment_failed", "inv_1")
    with pytest.raises(WebhookRejected, match="UTF-8"):
        provider().receive(basic(), json.dumps(event).encode("utf-16"))


def test_without_webhook_credentials_intake_names_both_variables():
    unset = provider(CHARGEBEE_WEBHOOK_USERNAME="", CHARGEBEE_WEBHOOK_PASSWORD="")
    assert unset.missing_for_intake() == ["CHARGEBEE_WEBHOOK_USERNAME", "CHARGEBEE_WEBHOOK_PASSWORD"]


# -- translation of stored events -----------------------------------------------------------------------


def test_a_stored_event_is_translated_from_the_apis_copy_not_the_delivered_content(cb):
    event = cb.add_invoice_event("payment_failed", "inv_1")
    forged_content = {
        "invoice": dict(cb.invoices["inv_1"], amount_due=1, customer_id="cust_attacker"),
        "customer": {"id": "cust_attacker", "email": "attacker@example.net"},
    }
    [failed] = provider(client=ApiCopy(cb)).translate(stored(event, content=forged_content))
    assert isinstance(failed, PaymentFailed)
    assert (failed.invoice.customer_id, failed.invoice.amount_due) == ("cust_ada", 4900)
    assert failed.invoice.customer_email == "ada@example.com"


def test_a_stored_event_the_api_does_not_know_is_refused(cb):
    forged = {"id": "ev_forged", "event_type": "payment_failed", "occurred_at": 1_790_000_000}
    with pytest.raises(UnconfirmedEvent):
        provider(client=ApiCopy(cb)).translate(stored(forged))


def test_without_api_credentials_handled_events_wait_for_configuration(cb):
    event = cb.add_invoice_event("payment_failed", "inv_1")
    no_key = provider(CHARGEBEE_API_KEY="")
    assert no_key.billing is None and no_key.missing_for_sending() == ["CHARGEBEE_API_KEY"]
    with pytest.raises(ConfigurationNeeded, match="CHARGEBEE_API_KEY"):
        no_key.translate(stored(event))


def test_unhandled_types_are_ignored_without_credentials_or_api_calls(cb):
    api = ApiCopy(cb)
    event = cb.add_event("coupon_created", {"coupon": {"id": "SAVE10"}})
    assert provider(client=api).translate(stored(event)) is None
    assert api.reads == []


def test_a_site_that_is_not_a_bare_name_is_named_for_sending():
    malformed = provider(CHARGEBEE_SITE="https://acme.chargebee.com")
    assert malformed.billing is None
    assert malformed.missing_for_sending()[0].startswith("CHARGEBEE_SITE")


# -- links into Chargebee -------------------------------------------------------------------------------


def test_dashboard_links_open_the_object_on_the_sites_app():
    p = provider()
    assert p.dashboard_url("invoice", "inv_1", False) == "https://acme-test.chargebee.com/d/invoices/inv_1"
    assert p.dashboard_url("customer", "a b/c", False) == "https://acme-test.chargebee.com/d/customers/a%20b%2Fc"
    assert p.dashboard_url("subscription", "sub_1", False) is None


def test_the_rate_limit_is_the_test_sites_unless_set_for_a_bigger_plan():
    from webhook_app.providers.chargebee.client import DEFAULT_RATE_PER_SECOND

    assert provider().client.bucket.rate == DEFAULT_RATE_PER_SECOND == 2.5
    assert provider(CHARGEBEE_RATE_PER_SECOND="15").client.bucket.rate == 15
