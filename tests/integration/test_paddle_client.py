"""PaddleClient against requests-mock (classification, paging, secrets) and against the served stand-in."""

from __future__ import annotations

import pytest
import requests
import requests_mock
from paddle_billing.Entities.Customer import Customer
from paddle_billing.Entities.Subscription import Subscription
from paddle_billing.Entities.Transaction import Transaction

from tests.fakes import FakeTime
from tests.standins import Faults, serve
from tests.standins.paddle import PaddleStandIn
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import ConfigurationNeeded, PermanentError, ResourceMissing, TransientError
from webhook_app.providers.paddle.client import PAGE_SIZE, RATE_PER_MINUTE, PaddleClient
from webhook_app.providers.paddle.money import minor_units

API_KEY = "pdl_sdbx_apikey_01hv8wx4vr9w6zsv6xss0b8az9_s3cr3tPart"
BASE = "https://sandbox-api.paddle.com"
EMAIL = "ada@example.com"


def error_body(code: str, detail: str, type_: str = "request_error") -> dict:
    return {
        "error": {"type": type_, "code": code, "detail": detail, "documentation_url": f"https://x/{code}"},
        "meta": {"request_id": "r1"},
    }


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(fake_time) -> PaddleClient:
    bucket = TokenBucket(RATE_PER_MINUTE / 60, burst=4, clock=fake_time.clock, sleep=fake_time.sleep)
    return PaddleClient(api_key=API_KEY, environment="sandbox", session=requests.Session(), bucket=bucket)


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


def assert_clean(error: Exception) -> None:
    text = str(error)
    assert API_KEY not in text
    assert "s3cr3tPart" not in text
    assert EMAIL not in text


# -- requests and shapes --------------------------------------------------------------------------


def test_get_transaction_with_customer_sends_key_version_and_include(http, client):
    http.get(f"{BASE}/transactions/txn_01", json={"data": {"id": "txn_01", "customer": {"email": EMAIL}}, "meta": {}})
    txn = client.get_transaction("txn_01", include_customer=True)
    assert txn["customer"]["email"] == EMAIL
    sent = http.last_request
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Paddle-Version"] == "1"
    assert sent.qs == {"include": ["customer"]}


def test_update_payment_method_transaction_is_read_from_the_subscription(http, client):
    http.get(
        f"{BASE}/subscriptions/sub_01/update-payment-method-transaction",
        json={"data": {"id": "txn_9", "checkout": {"url": "https://m.example/pay?_ptxn=txn_9"}}, "meta": {}},
    )
    assert client.update_payment_method_transaction("sub_01")["id"] == "txn_9"


def test_production_is_the_default_base_and_api_base_overrides_it(http):
    http.get("https://api.paddle.com/customers/ctm_1", json={"data": {"id": "ctm_1"}})
    http.get("http://127.0.0.1:9/customers/ctm_1", json={"data": {"id": "ctm_local"}})
    assert PaddleClient(api_key=API_KEY).get_customer("ctm_1")["id"] == "ctm_1"
    assert PaddleClient(api_key=API_KEY, api_base="http://127.0.0.1:9/").get_customer("ctm_1")["id"] == "ctm_local"


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"api_key": ""}, "PADDLE_API_KEY"),
        ({"api_key": API_KEY, "environment": "live"}, "PADDLE_ENVIRONMENT"),
        ({"api_key": API_KEY, "api_base": "ftp://x"}, "PADDLE_API_BASE"),
    ],
)
def test_bad_configuration_names_the_variable(kwargs, variable):
    with pytest.raises(ConfigurationNeeded, match=variable):
        PaddleClient(**kwargs)


@pytest.mark.parametrize("bad_id", ["../customers/ctm_1", "txn_1?x=1", "", "txn 1", "txn_é"])
def test_ids_that_would_change_the_url_are_refused_before_any_request(http, client, bad_id):
    with pytest.raises(PermanentError):
        client.get_transaction(bad_id)
    assert http.call_count == 0


def test_a_200_without_a_data_object_is_a_permanent_error(http, client):
    http.get(f"{BASE}/customers/ctm_1", json={"meta": {}})
    with pytest.raises(PermanentError, match="data"):
        client.get_customer("ctm_1")


# -- classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("get_transaction", "/transactions/txn_gone", "transaction"),
        ("get_customer", "/customers/txn_gone", "customer"),
        ("get_subscription", "/subscriptions/txn_gone", "subscription"),
        (
            "update_payment_method_transaction",
            "/subscriptions/txn_gone/update-payment-method-transaction",
            "subscription",
        ),
    ],
)
def test_404_is_resource_missing_naming_the_kind(http, client, method, path, kind):
    http.get(BASE + path, status_code=404, json=error_body("not_found", "Entity txn_gone not found"))
    with pytest.raises(ResourceMissing) as info:
        getattr(client, method)("txn_gone")
    assert info.value.kind == kind
    assert "Entity txn_gone not found" in str(info.value)


@pytest.mark.parametrize(
    ("status", "code"), [(401, "authentication_missing"), (401, "authentication_malformed"), (403, "invalid_token")]
)
def test_rejected_key_needs_configuration_and_never_shows_the_key(http, client, status, code):
    http.get(f"{BASE}/customers/ctm_1", status_code=status, json=error_body(code, f"bad key {API_KEY}"))
    with pytest.raises(ConfigurationNeeded, match="PADDLE_API_KEY") as info:
        client.get_customer("ctm_1")
    assert_clean(info.value)
    assert code in str(info.value)


def test_429_pauses_every_caller_for_retry_after(http, client, fake_time):
    http.get(
        f"{BASE}/customers/ctm_1",
        [
            {"status_code": 429, "headers": {"Retry-After": "7"}, "json": error_body("too_many_requests", "slow")},
            {"json": {"data": {"id": "ctm_1"}}},
        ],
    )
    with pytest.raises(TransientError) as info:
        client.get_customer("ctm_1")
    assert info.value.retry_after == 7
    before = fake_time.now
    client.get_customer("ctm_1")
    assert fake_time.now - before == pytest.approx(7)  # the shared bucket held the next request


def test_429_with_an_http_date_retry_after_is_understood(http, client):
    # paddle-python-sdk's ApiError does int(Retry-After) and would raise ValueError here.
    http.get(f"{BASE}/customers/ctm_1", status_code=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    with pytest.raises(TransientError) as info:
        client.get_customer("ctm_1")
    assert info.value.retry_after == 0


def test_429_without_retry_after_waits_a_minute(http, client):
    http.get(f"{BASE}/customers/ctm_1", status_code=429, json=error_body("too_many_requests", "slow"))
    with pytest.raises(TransientError) as info:
        client.get_customer("ctm_1")
    assert info.value.retry_after == 60


@pytest.mark.parametrize(
    "response",
    [
        {"status_code": 500, "json": error_body("internal_error", "temporary", "api_error")},
        {"status_code": 502, "text": "<html>bad gateway</html>"},
        {"status_code": 503, "json": error_body("service_unavailable", "maintenance", "api_error")},
        {"exc": requests.exceptions.ConnectTimeout},
        {"exc": requests.exceptions.ReadTimeout},
        {"exc": requests.exceptions.ConnectionError},
    ],
)
def test_server_errors_and_network_failures_are_transient(http, client, response):
    http.get(f"{BASE}/transactions/txn_1", **response)
    with pytest.raises(TransientError):
        client.get_transaction("txn_1")


def test_other_4xx_are_permanent_with_paddles_words_scrubbed(http, client):
    detail = f"Subscription not in automatic collection mode (customer {EMAIL}, key {API_KEY})"
    http.get(
        f"{BASE}/subscriptions/sub_1/update-payment-method-transaction",
        status_code=400,
        json=error_body("subscription_not_automatic_collection", detail),
    )
    with pytest.raises(PermanentError) as info:
        client.update_payment_method_transaction("sub_1")
    assert not isinstance(info.value, ResourceMissing)
    assert "subscription_not_automatic_collection" in str(info.value)
    assert "automatic collection mode" in str(info.value)
    assert_clean(info.value)


def test_account_without_billing_needs_configuration(http, client):
    http.get(f"{BASE}/customers/ctm_1", status_code=403, json=error_body("paddle_billing_not_enabled", "not enabled"))
    with pytest.raises(ConfigurationNeeded):
        client.get_customer("ctm_1")


# -- paging ---------------------------------------------------------------------------------------


def page(ids: list[str], next_url: str, has_more: bool) -> dict:
    return {
        "data": [{"id": i, "status": "past_due"} for i in ids],
        "meta": {"request_id": "r", "pagination": {"per_page": 30, "next": next_url, "has_more": has_more}},
    }


def test_past_due_transactions_follow_next_until_has_more_is_false(http, client):
    http.get(
        f"{BASE}/transactions",
        [
            {"json": page(["txn_1", "txn_2"], f"{BASE}/transactions?status=past_due&per_page=30&after=txn_2", True)},
            {"json": page(["txn_3"], f"{BASE}/transactions?status=past_due&per_page=30&after=txn_3", True)},
            {"json": page(["txn_4"], f"{BASE}/transactions?status=past_due&per_page=30&after=txn_4", False)},
        ],
    )
    assert [t["id"] for t in client.list_past_due_transactions()] == ["txn_1", "txn_2", "txn_3", "txn_4"]
    first, second, third = http.request_history
    assert first.qs == {"status": ["past_due"], "per_page": [str(PAGE_SIZE)]}
    assert second.qs["after"] == ["txn_2"]
    assert third.qs["after"] == ["txn_3"]


def test_past_due_transactions_of_one_customer(http, client):
    http.get(f"{BASE}/transactions", json=page(["txn_1"], f"{BASE}/transactions?after=txn_1", False))
    assert len(list(client.list_past_due_transactions(customer_id="ctm_9"))) == 1
    assert http.last_request.qs["customer_id"] == ["ctm_9"]


def test_a_next_url_on_another_host_is_not_followed_with_the_key(http, client):
    http.get(f"{BASE}/transactions", json=page(["txn_1"], "https://evil.example/transactions?after=txn_1", True))
    evil = http.get("https://evil.example/transactions", json=page([], "", False))
    with pytest.raises(PermanentError, match="another host"):
        list(client.list_past_due_transactions())
    assert evil.call_count == 0


def test_a_cursor_that_repeats_stops_instead_of_looping(http, client):
    http.get(f"{BASE}/transactions", json=page(["txn_1"], f"{BASE}/transactions?after=txn_1", True))
    with pytest.raises(PermanentError, match="same page twice"):
        list(client.list_past_due_transactions())


def test_a_failing_page_raises_the_classified_error(http, client):
    http.get(
        f"{BASE}/transactions",
        [
            {"json": page(["txn_1"], f"{BASE}/transactions?after=txn_1", True)},
            {"status_code": 503, "text": "down"},
        ],
    )
    seen = []
    with pytest.raises(TransientError):
        seen.extend(client.list_past_due_transactions())
    assert [t["id"] for t in seen] == ["txn_1"]


def test_check_credentials_reads_one_transaction(http, client):
    http.get(f"{BASE}/transactions", json=page([], f"{BASE}/transactions", False))
    assert "sandbox" in client.check_credentials()
    assert http.last_request.qs == {"per_page": ["1"]}
    http.get(f"{BASE}/transactions", status_code=403, json=error_body("invalid_token", "Invalid API key"))
    with pytest.raises(ConfigurationNeeded):
        client.check_credentials()


def test_the_bucket_paces_requests_at_240_a_minute(http, client, fake_time):
    http.get(f"{BASE}/customers/ctm_1", json={"data": {"id": "ctm_1"}})
    for _ in range(4 + 8):
        client.get_customer("ctm_1")
    # A burst of 4, then 8 more at 4 a second.
    assert fake_time.now == pytest.approx(2.0)


# -- against the served stand-in ------------------------------------------------------------------


@pytest.fixture
def standin():
    standin = PaddleStandIn()
    served = serve(standin.app)
    standin.base_url = served.url
    try:
        yield standin
    finally:
        served.stop()


def test_recovery_reads_against_the_stand_in_parse_as_the_sdks_entities(standin):
    client = PaddleClient(api_key=standin.api_key, api_base=standin.base_url)
    customer = standin.add_customer(email=EMAIL)
    sub = standin.add_subscription(customer["id"], unit_amount=4900)
    due = standin.fail_renewal(sub["id"], error_code="insufficient_funds", attempts=2)

    txn = client.get_transaction(due["id"], include_customer=True)
    assert txn["customer"]["email"] == EMAIL
    assert minor_units(txn["details"]["totals"]["grand_total"]) == 4900
    assert [p["error_code"] for p in txn["payments"]] == ["insufficient_funds", "insufficient_funds"]
    # The stand-in's shapes are the ones the official SDK's entity parsers accept.
    Transaction.from_dict(txn)
    Subscription.from_dict(client.get_subscription(sub["id"]))
    Customer.from_dict(client.get_customer(customer["id"]))

    update = client.update_payment_method_transaction(sub["id"])
    assert update["id"] == due["id"]  # past_due: the transaction that failed, so paying it collects
    assert update["checkout"]["url"].endswith(f"?_ptxn={due['id']}")
    standin.pay_transaction(due["id"])
    assert client.get_subscription(sub["id"])["status"] == "active"
    fresh = client.update_payment_method_transaction(sub["id"])  # active: a new zero-amount transaction
    assert (fresh["origin"], fresh["details"]["totals"]["total"]) == ("subscription_payment_method_change", "0")
    Transaction.from_dict(fresh)


def test_paging_and_filters_against_the_stand_in(standin):
    client = PaddleClient(api_key=standin.api_key, api_base=standin.base_url)
    ada, bob = standin.add_customer(), standin.add_customer(email="bob@example.com")
    for _ in range(65):
        standin.add_transaction(ada["id"])
    standin.add_transaction(bob["id"])
    standin.add_transaction(ada["id"], status="completed")
    assert len(list(client.list_past_due_transactions())) == 66
    assert len(list(client.list_past_due_transactions(ada["id"]))) == 65
    pages = [r for r in standin.requests if r["path"] == "/transactions"]
    assert len(pages) == 3 + 3  # 30 per page at most


def test_stand_in_errors_are_classified(standin):
    client = PaddleClient(api_key=standin.api_key, api_base=standin.base_url)
    customer = standin.add_customer()
    canceled = standin.add_subscription(customer["id"])
    standin.cancel_subscription(canceled["id"])
    with pytest.raises(PermanentError, match="subscription_is_canceled_action_invalid"):
        client.update_payment_method_transaction(canceled["id"])
    with pytest.raises(ResourceMissing):
        client.get_subscription("sub_01hsnothere")
    with pytest.raises(ConfigurationNeeded):
        PaddleClient(api_key="pdl_sdbx_apikey_wrong_000000", api_base=standin.base_url).get_customer(customer["id"])
    standin.faults = Faults(throttle_rate=1.0)
    with pytest.raises(TransientError) as info:
        client.get_customer(customer["id"])
    assert info.value.retry_after == 3
