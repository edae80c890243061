"""ChargebeeClient against requests-mock standing in for https://{site}.chargebee.com/api/v2."""

from __future__ import annotations

import base64
import json
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
from webhook_app.providers.chargebee.client import (
    DEFAULT_RATE_LIMIT_WAIT,
    DEFAULT_RATE_PER_SECOND,
    ChargebeeClient,
    ChargebeeRefused,
)

API_KEY = "test_cbKeyAbCdEf0123456789"
SITE = "acme-test"
BASE = "https://acme-test.chargebee.com/api/v2"
EMAIL = "ada@example.com"


def make_client(fake: FakeTime | None = None, **kwargs) -> ChargebeeClient:
    fake = fake or FakeTime()
    bucket = TokenBucket(DEFAULT_RATE_PER_SECOND, clock=fake.clock, sleep=fake.sleep)
    options = {"api_key": API_KEY, "site": SITE, "session": requests.Session(), "bucket": bucket, **kwargs}
    return ChargebeeClient(**options)


def cb_error(status: int, api_error_code: str, message: str, type_: str = "invalid_request") -> dict:
    return {
        "message": message,
        "type": type_,
        "api_error_code": api_error_code,
        "error_code": api_error_code,
        "error_msg": message,
        "http_status_code": status,
    }


def query(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


# -- construction and requests ---------------------------------------------------------------------------


def test_default_base_url_is_the_sites_chargebee_host():
    assert make_client().base_url == BASE
    assert make_client(site="acme").base_url == "https://acme.chargebee.com/api/v2"


def test_an_override_base_url_replaces_the_default_whole(http):
    http.get("http://127.0.0.1:9999/api/v2/invoices/inv_1", json={"invoice": {"id": "inv_1"}})
    client = make_client(base_url="http://127.0.0.1:9999/api/v2/")
    assert client.retrieve_invoice("inv_1") == {"id": "inv_1"}


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"api_key": ""}, "CHARGEBEE_API_KEY"),
        ({"site": None}, "CHARGEBEE_SITE"),
        ({"site": "acme.chargebee.com"}, "CHARGEBEE_SITE"),
        ({"site": "evil.example/x?"}, "CHARGEBEE_SITE"),
    ],
)
def test_missing_or_malformed_configuration_is_named(kwargs, variable):
    with pytest.raises(ConfigurationNeeded, match=variable):
        make_client(**kwargs)


def test_requests_use_basic_auth_with_the_api_key_as_username(http):
    http.get(f"{BASE}/customers/cust_1", json={"customer": {"id": "cust_1"}})
    make_client().retrieve_customer("cust_1")
    expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert http.last_request.headers["Authorization"] == expected


def test_every_call_takes_a_token_from_the_bucket_at_the_test_site_limit(http):
    fake = FakeTime()
    http.get(f"{BASE}/invoices/inv_1", json={"invoice": {"id": "inv_1"}})
    client = make_client(fake)
    for _ in range(5):
        client.retrieve_invoice("inv_1")
    # 150 calls a minute: a burst of 2.5 tokens, then one call every 0.4 s.
    assert pytest.approx(2.5) == DEFAULT_RATE_PER_SECOND
    assert sum(fake.sleeps) == pytest.approx((5 - 2.5) / 2.5)


def test_ids_are_escaped_so_they_cannot_change_the_route(http):
    http.get(requests_mock.ANY, json={"invoice": {"id": "x"}})
    make_client().retrieve_invoice("inv/../../customers?x=1#y")
    assert urlsplit(http.last_request.url).path == "/api/v2/invoices/inv%2F..%2F..%2Fcustomers%3Fx%3D1%23y"


def test_an_empty_id_is_a_bad_payload_not_a_list_call(http):
    with pytest.raises(BadPayload):
        make_client().retrieve_invoice("")
    assert http.call_count == 0


# -- retrievals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("retrieve_event", "events/ev_1", "event"),
        ("retrieve_invoice", "invoices/ev_1", "invoice"),
        ("retrieve_customer", "customers/ev_1", "customer"),
        ("retrieve_subscription", "subscriptions/ev_1", "subscription"),
    ],
)
def test_retrievals_return_the_resource_object_as_a_plain_dict(http, method, path, key):
    resource = {"id": "ev_1", "object": key, "amount_due": 4900}
    # Retrievals carry related resources beside the one asked for (a subscription's customer, a card).
    http.get(f"{BASE}/{path}", json={"card": {"object": "card"}, key: resource})
    assert getattr(make_client(), method)("ev_1") == resource


def test_a_200_without_the_expected_object_is_permanent(http):
    http.get(f"{BASE}/invoices/inv_1", text="<html>captive portal</html>")
    with pytest.raises(PermanentError, match="without a `invoice` object"):
        make_client().retrieve_invoice("inv_1")


# -- error classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("retrieve_event", "event"),
        ("retrieve_invoice", "invoice"),
        ("retrieve_customer", "customer"),
        ("retrieve_subscription", "subscription"),
    ],
)
def test_404_resource_not_found_is_resource_missing_naming_the_kind(http, method, kind):
    http.get(requests_mock.ANY, status_code=404, json=cb_error(404, "resource_not_found", f"{kind} not found"))
    with pytest.raises(ResourceMissing) as exc_info:
        getattr(make_client(), method)("x_1")
    assert exc_info.value.kind == kind
    assert kind in str(exc_info.value)


def test_404_on_a_hosted_page_names_the_customer(http):
    http.post(f"{BASE}/hosted_pages/collect_now", status_code=404, json=cb_error(404, "resource_not_found", "nope"))
    with pytest.raises(ResourceMissing) as exc_info:
        make_client().collect_now_page("cust_gone")
    assert exc_info.value.kind == "customer"


def test_404_site_not_found_asks_for_the_site_configuration(http):
    http.get(requests_mock.ANY, status_code=404, json=cb_error(404, "site_not_found", "Site not found"))
    with pytest.raises(ConfigurationNeeded, match="CHARGEBEE_SITE"):
        make_client().retrieve_invoice("inv_1")


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_ask_for_the_api_key(http, status):
    body = cb_error(status, "api_authentication_failed", "Sorry, authentication failed. Invalid api key", "untyped")
    http.get(requests_mock.ANY, status_code=status, json=body)
    with pytest.raises(ConfigurationNeeded, match="CHARGEBEE_API_KEY"):
        make_client().retrieve_invoice("inv_1")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_transient(http, status):
    http.get(requests_mock.ANY, status_code=status, text="internal_temporary_error")
    with pytest.raises(TransientError, match=str(status)):
        make_client().retrieve_invoice("inv_1")


@pytest.mark.parametrize("exc", [requests.ConnectTimeout, requests.ReadTimeout, requests.ConnectionError])
def test_timeouts_and_connection_errors_are_transient(http, exc):
    http.get(requests_mock.ANY, exc=exc)
    with pytest.raises(TransientError):
        make_client().retrieve_invoice("inv_1")


def test_429_is_transient_with_retry_after_and_pauses_every_caller(http):
    fake = FakeTime()
    client = make_client(fake)
    body = cb_error(429, "api_request_limit_exceeded", "request count exceeding acceptable limits", "operation_failed")
    http.get(requests_mock.ANY, status_code=429, json=body, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as exc_info:
        client.retrieve_invoice("inv_1")
    assert exc_info.value.retry_after == 7

    waited = client.bucket.acquire()  # the next call, from any thread sharing the bucket, waits it out

    assert waited == pytest.approx(7)


def test_429_without_retry_after_waits_for_the_minute_window_to_reset(http):
    http.get(requests_mock.ANY, status_code=429, json=cb_error(429, "api_request_limit_exceeded", "slow down"))
    with pytest.raises(TransientError) as exc_info:
        make_client().retrieve_invoice("inv_1")
    assert exc_info.value.retry_after == DEFAULT_RATE_LIMIT_WAIT == 60


def test_other_4xx_is_permanent_with_chargebees_message_and_code(http):
    body = cb_error(400, "invalid_request", "customer[id] : cannot be blank")
    http.post(requests_mock.ANY, status_code=400, json=body)
    with pytest.raises(ChargebeeRefused) as exc_info:
        make_client().collect_now_page("cust_1")
    assert isinstance(exc_info.value, PermanentError)
    assert exc_info.value.status == 400
    assert exc_info.value.api_error_code == "invalid_request"
    assert "customer[id] : cannot be blank" in str(exc_info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429, 500])
def test_no_exception_carries_the_api_key_or_a_customer_email(http, status):
    # A provider echoing what it was sent must not leak it into our logs or database.
    message = f"key {API_KEY} for {EMAIL} was refused"
    http.get(requests_mock.ANY, status_code=status, json=cb_error(status, "invalid_request", message))
    with pytest.raises(Exception) as exc_info:
        make_client().retrieve_customer(EMAIL)  # merchants may use emails as customer ids
    text = str(exc_info.value)
    assert API_KEY not in text
    assert EMAIL not in text


def test_a_transport_failure_message_carries_neither_key_nor_email(http):
    http.get(requests_mock.ANY, exc=requests.ConnectTimeout)
    with pytest.raises(TransientError) as exc_info:
        make_client().retrieve_customer(EMAIL)
    assert API_KEY not in str(exc_info.value)
    assert EMAIL not in str(exc_info.value)


# -- listing --------------------------------------------------------------------------------------------


def page(ids: list[str], next_offset: str | None) -> dict:
    body: dict = {"list": [{"invoice": {"id": i, "status": "payment_due"}} for i in ids]}
    if next_offset:
        body["next_offset"] = next_offset
    return body


def test_list_unpaid_invoices_pages_through_every_page(http):
    http.get(
        f"{BASE}/invoices",
        [
            {"json": page(["inv_1", "inv_2"], '["1700000000000","2"]')},
            {"json": page(["inv_3", "inv_4"], '["1700000000000","4"]')},
            {"json": page(["inv_5"], None)},
        ],
    )

    ids = [invoice["id"] for invoice in make_client().list_unpaid_invoices()]

    assert ids == ["inv_1", "inv_2", "inv_3", "inv_4", "inv_5"]
    offsets = [query(r).get("offset") for r in http.request_history]
    assert offsets == [None, ['["1700000000000","2"]'], ['["1700000000000","4"]']]


def test_list_unpaid_invoices_filters_on_the_statuses_still_being_collected(http):
    http.get(f"{BASE}/invoices", json=page([], None))
    list(make_client().list_unpaid_invoices(customer_id="cust_1"))
    params = query(http.last_request)
    assert json.loads(params["status[in]"][0]) == ["payment_due", "not_paid"]
    assert params["customer_id[is]"] == ["cust_1"]
    assert params["limit"] == ["100"]
    assert params["sort_by[asc]"] == ["date"]


def test_list_without_a_customer_sends_no_customer_filter(http):
    http.get(f"{BASE}/invoices", json=page(["inv_1"], None))
    assert [i["id"] for i in make_client().list_unpaid_invoices()] == ["inv_1"]
    assert "customer_id[is]" not in query(http.last_request)


def test_list_is_lazy_one_page_per_request(http):
    http.get(f"{BASE}/invoices", [{"json": page(["inv_1"], "o1")}, {"json": page(["inv_2"], None)}])
    invoices = make_client().list_unpaid_invoices()
    assert next(invoices)["id"] == "inv_1"
    assert http.call_count == 1


def test_a_repeated_next_offset_stops_instead_of_paging_forever(http):
    http.get(f"{BASE}/invoices", json=page(["inv_1"], "same"))
    with pytest.raises(PermanentError, match="repeated"):
        list(make_client().list_unpaid_invoices())
    assert http.call_count == 2


def test_a_failure_on_a_later_page_is_classified_too(http):
    http.get(f"{BASE}/invoices", [{"json": page(["inv_1"], "o1")}, {"status_code": 503, "text": "busy"}])
    invoices = make_client().list_unpaid_invoices()
    assert next(invoices)["id"] == "inv_1"
    with pytest.raises(TransientError):
        next(invoices)


# -- hosted pages and credentials -----------------------------------------------------------------------


HOSTED_PAGE = {
    "id": "hp_1",
    "type": "collect_now",
    "url": "https://acme-test.chargebee.com/pages/v3/hp_1/",
    "state": "created",
    "embed": False,
    "created_at": 1_780_000_000,
    "expires_at": 1_780_432_000,
    "object": "hosted_page",
}


def test_collect_now_page_posts_the_customer_form_encoded_and_returns_the_hosted_page(http):
    http.post(f"{BASE}/hosted_pages/collect_now", json={"hosted_page": HOSTED_PAGE})

    page_ = make_client().collect_now_page("cust_1", redirect_url="https://pay.example.com/done", currency_code="EUR")

    assert page_ == HOSTED_PAGE
    sent = parse_qs(http.last_request.text)
    assert sent == {
        "customer[id]": ["cust_1"],
        "redirect_url": ["https://pay.example.com/done"],
        "currency_code": ["EUR"],
    }
    assert http.last_request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_manage_payment_sources_page_posts_the_customer_and_optional_redirect(http):
    manage = {**HOSTED_PAGE, "type": "manage_payment_sources"}
    http.post(f"{BASE}/hosted_pages/manage_payment_sources", json={"hosted_page": manage})

    assert make_client().manage_payment_sources_page("cust_1")["type"] == "manage_payment_sources"
    assert parse_qs(http.last_request.text) == {"customer[id]": ["cust_1"]}


def test_hosted_pages_carry_the_idempotency_key_chargebee_replays_on(http):
    http.post(f"{BASE}/hosted_pages/collect_now", json={"hosted_page": HOSTED_PAGE})
    http.post(f"{BASE}/hosted_pages/manage_payment_sources", json={"hosted_page": HOSTED_PAGE})
    client = make_client()

    client.collect_now_page("cust_1", idempotency_key="webhook-app-notification-1-portal")
    assert http.last_request.headers["chargebee-idempotency-key"] == "webhook-app-notification-1-portal"
    client.manage_payment_sources_page("cust_1", idempotency_key="k2")
    assert http.last_request.headers["chargebee-idempotency-key"] == "k2"
    client.collect_now_page("cust_1")
    assert "chargebee-idempotency-key" not in http.last_request.headers


def test_an_idempotency_key_chargebee_would_refuse_is_caught_before_sending(http):
    with pytest.raises(ValueError, match="100"):
        make_client().collect_now_page("cust_1", idempotency_key="k" * 101)
    assert http.call_count == 0


def test_a_listing_can_ask_for_one_invoice_only(http):
    http.get(f"{BASE}/invoices", json=page(["inv_1"], "o1"))
    assert next(make_client().list_unpaid_invoices("cust_1", page_size=1))["id"] == "inv_1"
    assert query(http.last_request)["limit"] == ["1"]
    with pytest.raises(ValueError):
        next(make_client().list_unpaid_invoices(page_size=101))


def test_a_read_made_with_retrying_waits_out_a_429_and_reads_again(http):
    fake = FakeTime()
    http.get(
        f"{BASE}/customers/cust_1",
        [
            {"status_code": 429, "json": cb_error(429, "api_request_limit_exceeded", "slow down")},
            {"json": {"customer": {"id": "cust_1"}}},
        ],
    )
    client = make_client(fake, sleep=fake.sleep)
    assert client.retrying(lambda: client.retrieve_customer("cust_1"), retries=2) == {"id": "cust_1"}
    assert DEFAULT_RATE_LIMIT_WAIT in fake.sleeps and http.call_count == 2


def test_a_wait_longer_than_the_caller_allows_is_raised_for_its_own_backoff(http):
    http.get(f"{BASE}/customers/cust_1", status_code=429, json=cb_error(429, "api_request_limit_exceeded", "wait"))
    client = make_client()
    with pytest.raises(TransientError) as throttled:
        client.retrying(lambda: client.retrieve_customer("cust_1"), retries=3, max_wait=5)
    assert throttled.value.retry_after == DEFAULT_RATE_LIMIT_WAIT and http.call_count == 1


def test_reads_are_not_retried_unless_asked(http):
    http.get(f"{BASE}/customers/cust_1", status_code=503, text="busy")
    with pytest.raises(TransientError):
        make_client().retrieve_customer("cust_1")
    assert http.call_count == 1


def test_check_credentials_names_the_site_and_catalog_version(http):
    body = {"configurations": [{"domain": "acme-test", "product_catalog_version": "v2", "object": "configuration"}]}
    http.get(f"{BASE}/configurations", json=body)
    assert make_client().check_credentials() == "Chargebee site acme-test: API key accepted, product catalog v2"


def test_check_credentials_with_a_bad_key_asks_for_the_key(http):
    http.get(f"{BASE}/configurations", status_code=401, json=cb_error(401, "api_authentication_failed", "bad key"))
    with pytest.raises(ConfigurationNeeded, match="CHARGEBEE_API_KEY"):
        make_client().check_credentials()
