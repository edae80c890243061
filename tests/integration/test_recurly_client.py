"""RecurlyClient against requests-mock standing in for https://v3.recurly.com, and exact money conversion."""

from __future__ import annotations

import base64
import json
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock

from tests.fakes import FakeTime
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import (
    BadPayload,
    ConfigurationNeeded,
    PermanentError,
    ResourceMissing,
    TransientError,
)
from webhook_app.providers.recurly.client import (
    DEFAULT_RATE_LIMIT_WAIT,
    DEFAULT_RATE_PER_SECOND,
    RecurlyClient,
    RecurlyRefused,
    to_minor_units,
)

API_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
BASE = "https://v3.recurly.com"
EMAIL = "ada@example.com"
INVOICE = {
    "id": "e28zov4fw0v2",
    "object": "invoice",
    "number": "1001",
    "state": "past_due",
    "currency": "USD",
    "total": 49.99,
    "balance": 49.99,
    "paid": 0,
    "account": {"id": "a1", "code": "ada", "email": EMAIL},
}


def make_client(fake: FakeTime | None = None, **kwargs) -> RecurlyClient:
    fake = fake or FakeTime()
    bucket = TokenBucket(DEFAULT_RATE_PER_SECOND, clock=fake.clock, sleep=fake.sleep)
    return RecurlyClient(**{"api_key": API_KEY, "session": requests.Session(), "bucket": bucket, **kwargs})


def rc_error(type_: str, message: str, **extra) -> dict:
    return {"error": {"type": type_, "message": message, **extra}}


def query(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


# -- construction and requests ---------------------------------------------------------------------------


def test_default_base_url_is_recurlys_v3_host_and_an_override_replaces_it(http):
    assert make_client().base_url == BASE
    http.get("http://127.0.0.1:9999/invoices/i1", json={**INVOICE, "id": "i1"})
    assert make_client(base_url="http://127.0.0.1:9999/").get_invoice("i1")["id"] == "i1"


def test_a_missing_api_key_names_the_variable():
    with pytest.raises(ConfigurationNeeded, match="RECURLY_API_KEY"):
        make_client(api_key="")


def test_requests_pin_the_api_version_and_use_the_key_as_basic_auth_username(http):
    http.get(f"{BASE}/invoices/e28zov4fw0v2", json=INVOICE)
    make_client().get_invoice("e28zov4fw0v2")
    headers = http.last_request.headers
    assert headers["Accept"] == "application/vnd.recurly.v2021-02-25"
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


def test_the_bucket_defaults_to_the_sandbox_limit_of_400_a_minute():
    assert pytest.approx(400 / 60) == DEFAULT_RATE_PER_SECOND
    assert make_client().bucket.rate == pytest.approx(400 / 60)


def test_invoices_can_be_fetched_by_number_and_accounts_by_code(http):
    http.get(f"{BASE}/invoices/number-1001", json=INVOICE)
    http.get(f"{BASE}/accounts/code-ada", json={"id": "a1", "code": "ada", "hosted_login_token": "tok"})
    client = make_client()
    assert client.get_invoice("number-1001")["number"] == "1001"
    assert client.get_account("code-ada")["hosted_login_token"] == "tok"


def test_ids_and_codes_are_escaped_so_they_cannot_change_the_route(http):
    http.get(requests_mock.ANY, json={"id": "a1"})
    make_client().get_account("code-ada/../../sites?x#y")
    assert urlsplit(http.last_request.url).path == "/accounts/code-ada%2F..%2F..%2Fsites%3Fx%23y"


def test_an_empty_id_is_a_bad_payload_not_a_list_call(http):
    with pytest.raises(BadPayload):
        make_client().get_invoice(" ")
    assert http.call_count == 0


def test_a_200_without_a_resource_is_permanent(http):
    http.get(f"{BASE}/invoices/i1", text="<html>maintenance</html>")
    with pytest.raises(PermanentError, match="without a resource"):
        make_client().get_invoice("i1")


# -- error classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "kind"), [("get_invoice", "invoice"), ("get_account", "account")])
def test_404_is_resource_missing_naming_the_kind(http, method, kind):
    http.get(requests_mock.ANY, status_code=404, json=rc_error("not_found", f"Couldn't find {kind}", params=[]))
    with pytest.raises(ResourceMissing) as exc_info:
        getattr(make_client(), method)("x1")
    assert exc_info.value.kind == kind


def test_404_listing_an_accounts_invoices_names_the_account(http):
    http.get(requests_mock.ANY, status_code=404, json=rc_error("not_found", "Couldn't find Account"))
    with pytest.raises(ResourceMissing) as exc_info:
        list(make_client().list_past_due_invoices(account_id="code-gone"))
    assert exc_info.value.kind == "account"


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_ask_for_the_api_key(http, status):
    http.get(requests_mock.ANY, status_code=status, json=rc_error("unauthorized", "Invalid API key"))
    with pytest.raises(ConfigurationNeeded, match="RECURLY_API_KEY"):
        make_client().get_invoice("i1")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_transient(http, status):
    http.get(requests_mock.ANY, status_code=status, json=rc_error("internal_server_error", "oops"))
    with pytest.raises(TransientError, match=str(status)):
        make_client().get_invoice("i1")


@pytest.mark.parametrize("exc", [requests.ConnectTimeout, requests.ReadTimeout, requests.ConnectionError])
def test_timeouts_and_connection_errors_are_transient(http, exc):
    http.get(requests_mock.ANY, exc=exc)
    with pytest.raises(TransientError):
        make_client().get_invoice("i1")


def test_429_honours_retry_after_and_pauses_every_caller(http):
    fake = FakeTime()
    client = make_client(fake)
    http.get(
        requests_mock.ANY, status_code=429, json=rc_error("rate_limited", "slow down"), headers={"Retry-After": "12"}
    )
    with pytest.raises(TransientError) as exc_info:
        client.get_invoice("i1")
    assert exc_info.value.retry_after == 12
    assert client.bucket.acquire() == pytest.approx(12)


def test_429_waits_until_x_ratelimit_reset_when_there_is_no_retry_after(http):
    reset = int(time.time()) + 30
    http.get(
        requests_mock.ANY,
        status_code=429,
        json=rc_error("rate_limited", "x"),
        headers={"X-RateLimit-Reset": str(reset)},
    )
    with pytest.raises(TransientError) as exc_info:
        make_client().get_invoice("i1")
    assert 27 <= exc_info.value.retry_after <= 30


@pytest.mark.parametrize(("headers", "expected"), [({}, DEFAULT_RATE_LIMIT_WAIT), ({"X-RateLimit-Reset": "soon"}, 60)])
def test_429_without_usable_headers_waits_a_minute(http, headers, expected):
    http.get(requests_mock.ANY, status_code=429, json=rc_error("rate_limited", "x"), headers=headers)
    with pytest.raises(TransientError) as exc_info:
        make_client().get_invoice("i1")
    assert exc_info.value.retry_after == expected


def test_a_reset_far_in_the_future_is_capped_at_one_window(http):
    headers = {"X-RateLimit-Reset": str(int(time.time()) + 86400)}
    http.get(requests_mock.ANY, status_code=429, json=rc_error("rate_limited", "x"), headers=headers)
    with pytest.raises(TransientError) as exc_info:
        make_client().get_invoice("i1")
    assert exc_info.value.retry_after == 300


def test_other_4xx_is_permanent_with_recurlys_type_and_message(http):
    http.get(requests_mock.ANY, status_code=400, json=rc_error("bad_request", "Invalid parameter: state"))
    with pytest.raises(RecurlyRefused) as exc_info:
        make_client().get_invoice("i1")
    assert exc_info.value.status == 400
    assert exc_info.value.error_type == "bad_request"
    assert "Invalid parameter: state" in str(exc_info.value)


def test_an_unsupported_api_version_is_permanent(http):
    http.get(requests_mock.ANY, status_code=406, json=rc_error("invalid_api_version", "That accept header isn't..."))
    with pytest.raises(PermanentError, match="v2021-02-25"):
        make_client().get_invoice("i1")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500])
def test_no_exception_carries_the_api_key_or_a_customer_email(http, status):
    message = f"key {API_KEY} with account {EMAIL} refused"
    http.get(requests_mock.ANY, status_code=status, json=rc_error("validation", message))
    with pytest.raises(Exception) as exc_info:
        make_client().get_account(f"code-{EMAIL}")  # account codes are often emails
    assert API_KEY not in str(exc_info.value)
    assert EMAIL not in str(exc_info.value)


# -- listing --------------------------------------------------------------------------------------------


def page(ids: list[str], next_link: str | None) -> dict:
    return {
        "object": "list",
        "has_more": next_link is not None,
        "next": next_link,
        "data": [{**INVOICE, "id": i} for i in ids],
    }


def test_list_past_due_invoices_follows_next_until_has_more_is_false(http):
    http.get(
        f"{BASE}/invoices",
        [
            {"json": page(["i1", "i2"], "/invoices?cursor=c2&limit=200&order=asc&sort=created_at&state=past_due")},
            {"json": page(["i3"], "/invoices?cursor=c3&limit=200&order=asc&sort=created_at&state=past_due")},
            {"json": page(["i4"], None)},
        ],
    )

    ids = [invoice["id"] for invoice in make_client().list_past_due_invoices()]

    assert ids == ["i1", "i2", "i3", "i4"]
    first, second, third = (query(r) for r in http.request_history)
    assert first == {"state": ["past_due"], "limit": ["200"], "order": ["asc"], "sort": ["created_at"]}
    assert second["cursor"] == ["c2"]
    assert third["cursor"] == ["c3"]
    assert all(r.headers["Authorization"].startswith("Basic ") for r in http.request_history)


def test_listing_one_accounts_invoices_uses_the_account_path(http):
    http.get(f"{BASE}/accounts/code-ada/invoices", json=page(["i1"], None))
    assert [i["id"] for i in make_client().list_past_due_invoices(account_id="code-ada")] == ["i1"]
    assert query(http.last_request)["state"] == ["past_due"]


def test_an_invoice_seen_on_two_pages_is_yielded_once(http):
    http.get(
        f"{BASE}/invoices", [{"json": page(["i1", "i2"], "/invoices?cursor=2")}, {"json": page(["i2", "i3"], None)}]
    )
    assert [i["id"] for i in make_client().list_past_due_invoices()] == ["i1", "i2", "i3"]


def test_has_more_false_ends_the_listing_even_with_a_next_link(http):
    body = {**page(["i1"], "/invoices?cursor=2"), "has_more": False}
    http.get(f"{BASE}/invoices", json=body)
    assert [i["id"] for i in make_client().list_past_due_invoices()] == ["i1"]
    assert http.call_count == 1


def test_a_next_link_to_another_host_is_refused_so_the_key_never_leaves(http):
    http.get(f"{BASE}/invoices", json=page(["i1"], "https://evil.example/invoices?cursor=2"))
    with pytest.raises(PermanentError, match="leaves the API host"):
        list(make_client().list_past_due_invoices())
    assert http.call_count == 1


def test_an_absolute_next_link_on_the_api_host_is_followed(http):
    http.get(f"{BASE}/invoices", [{"json": page(["i1"], f"{BASE}/invoices?cursor=2")}, {"json": page(["i2"], None)}])
    assert [i["id"] for i in make_client().list_past_due_invoices()] == ["i1", "i2"]


def test_a_repeated_next_link_stops_instead_of_paging_forever(http):
    http.get(f"{BASE}/invoices", json=page(["i1"], "/invoices?cursor=same"))
    with pytest.raises(PermanentError, match="repeated"):
        list(make_client().list_past_due_invoices())


# -- collection, credentials, hosted page -------------------------------------------------------------------


def test_collect_invoice_puts_to_collect_and_returns_the_updated_invoice(http):
    paid = {**INVOICE, "state": "paid", "balance": 0, "paid": 49.99}
    http.put(f"{BASE}/invoices/e28zov4fw0v2/collect", json=paid)

    assert make_client().collect_invoice("e28zov4fw0v2")["state"] == "paid"
    assert http.last_request.json() == {}


def test_a_declined_collection_is_permanent_with_the_decline_codes_but_not_the_customer_texts(http):
    body = rc_error(
        "transaction",
        "Your card was declined.",
        transaction_error={
            "object": "transaction_error",
            "transaction_id": "t1",
            "category": "soft",
            "code": "insufficient_funds",
            "decline_code": "insufficient_funds",
            "message": f"Dear {EMAIL}, your card was declined",
            "merchant_advice": "Ask the customer for another card",
        },
    )
    http.put(requests_mock.ANY, status_code=422, json=body)
    with pytest.raises(RecurlyRefused) as exc_info:
        make_client().collect_invoice("e28zov4fw0v2")
    assert exc_info.value.status == 422
    assert exc_info.value.error_type == "transaction"
    assert exc_info.value.transaction_error == {
        "code": "insufficient_funds",
        "decline_code": "insufficient_funds",
        "category": "soft",
        "transaction_id": "t1",
    }
    assert EMAIL not in str(exc_info.value)


def test_check_credentials_names_the_site_and_its_mode(http):
    body = {"object": "list", "has_more": False, "next": None, "data": [{"subdomain": "acme", "mode": "sandbox"}]}
    http.get(f"{BASE}/sites", json=body)
    assert make_client().check_credentials() == "Recurly site acme (sandbox): API key accepted"


def test_billing_info_url_is_the_hosted_edit_page_with_the_login_token():
    url = make_client().billing_info_url("acme", "abc123DEF")
    assert url == "https://acme.recurly.com/account/billing_info/edit?ht=abc123DEF"


def test_billing_info_url_escapes_the_token_and_can_point_at_a_stand_in():
    client = make_client(hosted_base_url="http://127.0.0.1:5555/")
    assert client.billing_info_url("acme", "a&b=c") == "http://127.0.0.1:5555/account/billing_info/edit?ht=a%26b%3Dc"


@pytest.mark.parametrize("subdomain", ["", "acme.recurly.com", "evil.example/x", "https://acme"])
def test_billing_info_url_refuses_anything_but_a_subdomain(subdomain):
    with pytest.raises(ConfigurationNeeded, match="RECURLY_SUBDOMAIN"):
        make_client().billing_info_url(subdomain, "tok")


def test_billing_info_url_needs_a_token():
    with pytest.raises(BadPayload):
        make_client().billing_info_url("acme", "")


# -- money ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (49.99, "USD", 4999),
        ("49.99", "usd", 4999),
        (Decimal("49.990"), "USD", 4999),  # trailing zeros are not extra precision
        (49, "USD", 4900),
        (0, "USD", 0),
        ("0.00", "USD", 0),
        (-12.5, "USD", -1250),  # credits are negative
        (500, "JPY", 500),
        (500.0, "JPY", 500),
        ("1E+3", "JPY", 1000),
        (1.234, "KWD", 1234),
        ("12.5", "BHD", 12500),
        (19.99, "EUR", 1999),
    ],
)
def test_to_minor_units_converts_major_units_exactly(amount, currency, expected):
    assert to_minor_units(amount, currency) == expected


def test_json_numbers_that_float_math_gets_wrong_convert_exactly():
    # Naive float arithmetic loses a cent on these; parsing through str() does not.
    invoice = json.loads('{"total": 19.99, "balance": 1.15, "paid": 4.35, "big": 1234567.89}')
    assert int(invoice["total"] * 100) == 1998
    assert [to_minor_units(invoice[k], "USD") for k in ("total", "balance", "paid", "big")] == [
        1999,
        115,
        435,
        123456789,
    ]


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (0.1 + 0.2, "USD"),  # 0.30000000000000004: more digits than cents
        (json.loads("0.30000000000000004"), "USD"),
        ("49.999", "USD"),
        ("1.0000000000000000000000000001", "USD"),  # beyond Decimal's default 28 digits of context
        ("1.5", "JPY"),
        (0.5, "JPY"),
        ("1.2345", "KWD"),
        ("1.0001", "BHD"),
    ],
)
def test_more_digits_than_the_currency_allows_is_refused_not_rounded(amount, currency):
    with pytest.raises(BadPayload, match="more decimal places"):
        to_minor_units(amount, currency)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("NaN", "USD"),
        (float("inf"), "USD"),
        ("abc", "USD"),
        ("", "USD"),
        (True, "USD"),
        (None, "USD"),
        ("1e30", "USD"),
        ("1E+999999999", "USD"),
        (10, "US"),
        (10, "U$D"),
    ],
)
def test_non_amounts_and_bad_currencies_are_refused(amount, currency):
    with pytest.raises(BadPayload):
        to_minor_units(amount, currency)
