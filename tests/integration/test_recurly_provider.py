"""RecurlyProvider and its runtime port against requests-mock standing in for https://v3.recurly.com:
intake (signature, envelope, nothing fetched), the click-time link, invoice re-reads, the mode."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime

import pytest
import requests_mock

from tests.fixtures import recurly_objects as ro
from tests.standins.recurly import signed_webhook
from webhook_app import domain
from webhook_app.config import load_settings
from webhook_app.errors import ConfigurationNeeded, ResourceMissing, WebhookRejected
from webhook_app.providers import build_providers
from webhook_app.providers.base import Billing, LinkTarget, Provider, StoredEvent
from webhook_app.providers.recurly import RecurlyProvider
from webhook_app.providers.recurly.billing import RecurlyBilling

BASE = "https://v3.recurly.com"
SECRET = "endpoint-secret-1"
ENV = {
    "RECURLY_API_KEY": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "RECURLY_WEBHOOK_SECRET": f"endpoint-secret-0,{SECRET}",
    "RECURLY_SUBDOMAIN": "acme",
}
TARGET = LinkTarget(case_id=1, customer_id="ada", invoice_id="1001", subscription_id=None, currency="usd")


def provider(**env: str) -> RecurlyProvider:
    built = build_providers(load_settings({**ENV, **env}))["recurly"]
    assert isinstance(built, RecurlyProvider)
    return built


@pytest.fixture
def http():
    with requests_mock.Mocker() as mock:
        yield mock


def test_the_provider_and_its_port_fulfil_the_core_protocols():
    recurly = provider()
    assert isinstance(recurly, Provider) and isinstance(recurly.billing, Billing)
    assert recurly.enabled and recurly.missing_for_intake() == [] and recurly.missing_for_sending() == []
    bare = provider(RECURLY_API_KEY="", RECURLY_WEBHOOK_SECRET="", RECURLY_SUBDOMAIN="")
    assert not bare.enabled and bare.billing is None
    assert bare.missing_for_intake() == ["RECURLY_WEBHOOK_SECRET"]
    assert bare.missing_for_sending() == ["RECURLY_API_KEY", "RECURLY_SUBDOMAIN"]


def test_receive_verifies_and_reads_the_envelope_without_calling_recurly(http):
    notification = ro.notification("charge_invoice", "past_due", invoice_number=1001)
    body, headers = signed_webhook(notification, SECRET)
    event = provider().receive(headers, body)
    assert (event.event_id, event.type, event.payload) == (notification["id"], "charge_invoice.past_due", body.decode())
    assert event.occurred_at.isoformat() == "2026-11-01T10:00:05" and event.livemode is True
    assert http.request_history == []  # intake never calls the billing system
    # However the headers are spelled (Werkzeug title-cases them; a plain dict keeps what it was given).
    spelled = {"Recurly-Signature": headers["recurly-signature"]}
    assert provider().receive(spelled, body).event_id == notification["id"]


def test_receive_refuses_a_stale_timestamp_and_a_body_that_is_not_utf8():
    notification = ro.notification("charge_invoice", "past_due", invoice_number=1001)
    body, headers = signed_webhook(notification, SECRET, timestamp_ms=int((time.time() - 301) * 1000))
    with pytest.raises(WebhookRejected, match="too old"):
        provider().receive(headers, body)
    latin = body.replace(b'"charge_invoice"', '"charge_invoicé"'.encode("latin-1"))
    timestamp = str(int(time.time() * 1000))
    signature = hmac.new(SECRET.encode(), timestamp.encode() + b"." + latin, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookRejected):
        provider().receive({"recurly-signature": f"{timestamp},{signature}"}, latin)


def test_update_link_reads_the_login_token_at_click_time_and_never_for_an_email(http):
    account = http.get(f"{BASE}/accounts/code-ada", json={"id": "a1", "object": "account", "code": "ada"})
    port = provider().billing
    assert port is not None
    assert port.update_link(TARGET, for_email=True) is None
    assert account.call_count == 0  # nothing read, nothing minted, for a message
    for token in ("tok-one", "tok-two"):
        account = http.get(f"{BASE}/accounts/code-ada", json={"id": "a1", "code": "ada", "hosted_login_token": token})
        link = port.update_link(TARGET)
        assert link is not None
        assert (link.url, link.reference) == (f"https://acme.recurly.com/account/billing_info/edit?ht={token}", "a1")


def test_update_link_names_what_is_missing(http):
    http.get(f"{BASE}/accounts/code-ada", status_code=404, json={"error": {"type": "not_found", "message": "nope"}})
    with pytest.raises(ResourceMissing) as missing:
        provider().billing.update_link(TARGET)  # type: ignore[union-attr]
    assert missing.value.kind == "account"
    with pytest.raises(ConfigurationNeeded, match="RECURLY_SUBDOMAIN"):
        provider(RECURLY_SUBDOMAIN="").billing.update_link(TARGET)  # type: ignore[union-attr]


def test_retrieve_invoice_by_number_in_the_sites_mode_read_once(http):
    sites = http.get(f"{BASE}/sites", json={"data": [{"subdomain": "acme", "mode": "production"}], "has_more": False})
    http.get(f"{BASE}/invoices/number-1001", json=ro.invoice("1001", total=12.345, currency="KWD"))
    port = provider().billing
    assert isinstance(port, RecurlyBilling)
    first, second = port.retrieve_invoice("1001"), port.retrieve_invoice("1001")
    assert first == second and first.livemode is True and sites.call_count == 1
    assert (first.amount_due, first.currency, first.status) == (12345, "kwd", domain.OPEN)


@pytest.mark.parametrize("mode", ["sandbox", "development"])
def test_sandbox_and_development_sites_give_test_rows(http, mode):
    http.get(f"{BASE}/sites", json={"data": [{"subdomain": "acme", "mode": mode}], "has_more": False})
    assert provider().billing.livemode() is False  # type: ignore[union-attr]


def test_list_unpaid_invoices_pages_past_due_invoices_of_one_account(http):
    http.get(f"{BASE}/sites", json={"data": [{"mode": "sandbox"}], "has_more": False})
    listing = http.get(
        f"{BASE}/accounts/code-ada/invoices",
        json={"object": "list", "has_more": False, "next": None, "data": [ro.invoice("1"), ro.invoice("2")]},
    )
    views = list(provider().billing.list_unpaid_invoices(customer_id="ada"))  # type: ignore[union-attr]
    assert [v.id for v in views] == ["1", "2"] and listing.last_request.qs["state"] == ["past_due"]


def stored(notification: dict) -> StoredEvent:
    name = f"{notification['object_type']}.{notification['event_type']}"
    return StoredEvent("recurly", notification["id"], name, True, None, datetime(2026, 11, 1), notification)


def test_translate_calls_nothing_for_unhandled_types_and_waits_for_a_key(http):
    assert provider().translate(stored(ro.notification("subscription", "renewed", uuid="x"))) is None
    with pytest.raises(ConfigurationNeeded, match="RECURLY_API_KEY"):
        provider(RECURLY_API_KEY="").translate(stored(ro.notification("charge_invoice", "past_due", invoice_number=1)))
    assert http.request_history == []


def test_dashboard_links_open_the_invoice_by_number_and_the_account_by_code():
    recurly = provider()
    assert recurly.dashboard_url("invoice", "1001", False) == "https://acme.recurly.com/invoices/1001"
    assert recurly.dashboard_url("customer", "ada@x", True) == "https://acme.recurly.com/accounts/ada%40x"
    assert provider(RECURLY_SUBDOMAIN="").dashboard_url("invoice", "1001", True) is None


def test_a_subdomain_given_as_a_host_is_a_configuration_problem():
    settings = load_settings({**ENV, "RECURLY_SUBDOMAIN": "acme.recurly.com"})
    assert settings.recurly.subdomain is None
    assert any("RECURLY_SUBDOMAIN" in problem for problem in settings.problems)
