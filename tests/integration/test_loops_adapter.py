"""LoopsMessenger against a requests-mock stand-in for https://app.loops.so/api (no patching of our code)."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests
import requests_mock

from tests.fakes import FakeTime
from webhook_app.adapters import InvoiceLine, Message, SendResult
from webhook_app.adapters.loops import IDEMPOTENCY_KEY_MAX, LoopsMessenger
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.config import load_settings
from webhook_app.errors import ConfigurationNeeded, MessengerRejected, TransientError

API_KEY = "d41d8cd98f00b204e9800998ecf8427e"
BASE = "https://app.loops.so/api"
TRANSACTIONAL = f"{BASE}/v1/transactional"
EVENTS = f"{BASE}/v1/events/send"
EMAIL = "ada@example.com"
CONTRACT_FIELDS = {
    "updatePaymentUrl",
    "portalUrl",
    "hostedInvoiceUrl",
    "amountDue",
    "currency",
    "invoiceId",
    "invoiceNumber",
    "customerName",
    "attemptCount",
    "nextPaymentAttempt",
}


def make_message(**overrides) -> Message:
    invoice = InvoiceLine(
        invoice_id="in_1Qx",
        number="ACME-0042",
        amount_due=4900,
        currency="usd",
        hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_abc",
        attempt_count=2,
        next_payment_attempt=datetime(2026, 5, 20, 12, 0, 0),
    )
    fields = dict(
        kind="payment_failed",
        email=EMAIL,
        customer_id="cus_ABC",
        customer_name="Ada Lovelace",
        update_payment_url="https://pay.example.com/r/tok123",
        portal_url="https://billing.stripe.com/p/session/test_xyz",
        invoice=invoice,
        created_at=datetime(2026, 5, 18, 9, 30, 0),
        step=1,
        is_final_notice=False,
    )
    fields.update(overrides)
    return Message(**fields)


def make_messenger(fake: FakeTime | None = None, **env) -> LoopsMessenger:
    settings = load_settings({"LOOPS_API_KEY": API_KEY, **env})
    fake = fake or FakeTime()
    bucket = TokenBucket(settings.loops.rate_per_second, clock=fake.clock, sleep=fake.sleep)
    return LoopsMessenger(settings.loops, session=requests.Session(), bucket=bucket)


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


# -- payload shapes -------------------------------------------------------------------------------


def test_transactional_send_posts_template_id_email_and_every_contract_variable(http):
    http.post(TRANSACTIONAL, json={"success": True})
    messenger = make_messenger(LOOPS_TRANSACTIONAL_ID="cll42l54f20i1la0lfooe3z12")

    result = messenger.send(make_message(), "notification-17")

    assert result == SendResult(provider="loops", message_id=None, duplicate=False)
    body = http.last_request.json()
    assert body["transactionalId"] == "cll42l54f20i1la0lfooe3z12"
    assert body["email"] == EMAIL
    variables = body["dataVariables"]
    assert variables.keys() >= CONTRACT_FIELDS
    assert variables["updatePaymentUrl"] == "https://pay.example.com/r/tok123"
    assert variables["amountDue"] == "$49.00"
    assert variables["currency"] == "USD"
    assert variables["invoiceNumber"] == "ACME-0042"
    assert variables["attemptCount"] == 2
    assert variables["nextPaymentAttempt"] == "2026-05-20T12:00:00Z"


def test_transactional_variables_are_only_strings_and_numbers_as_loops_documents(http):
    http.post(TRANSACTIONAL, json={"success": True})
    messenger = make_messenger(LOOPS_TRANSACTIONAL_ID="tx_1")

    messenger.send(make_message(is_final_notice=True, customer_name=None), "k")

    variables = http.last_request.json()["dataVariables"]
    assert variables["isFinalNotice"] == "true"
    assert variables["customerName"] == ""
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in variables.values())


def test_transactional_send_carries_the_unpaid_invoices_as_an_array_variable(http):
    http.post(TRANSACTIONAL, json={"success": True})
    other = InvoiceLine(
        invoice_id="in_2",
        number="ACME-0043",
        amount_due=1250,
        currency="eur",
        hosted_invoice_url=None,
        attempt_count=1,
        next_payment_attempt=None,
    )
    messenger = make_messenger(LOOPS_TRANSACTIONAL_ID="tx_1")

    messenger.send(make_message(other_invoices=(other,)), "k")

    variables = http.last_request.json()["dataVariables"]
    assert variables["invoiceCount"] == 2
    assert [line["invoiceId"] for line in variables["invoices"]] == ["in_1Qx", "in_2"]
    assert variables["invoices"][1]["hostedInvoiceUrl"] == ""


def test_without_transactional_id_an_event_carries_every_contract_property(http):
    http.post(EVENTS, json={"success": True})
    messenger = make_messenger()

    result = messenger.send(make_message(is_final_notice=True), "notification-17")

    assert result.duplicate is False
    body = http.last_request.json()
    assert body["eventName"] == "paymentFailed"
    assert body["email"] == EMAIL
    properties = body["eventProperties"]
    assert properties.keys() >= CONTRACT_FIELDS
    assert properties["amountDue"] == "$49.00"
    assert properties["isFinalNotice"] is True  # events accept booleans


def test_event_name_comes_from_loops_event_name(http):
    http.post(EVENTS, json={"success": True})

    make_messenger(LOOPS_EVENT_NAME="invoicePaymentFailed").send(make_message(), "k")

    assert http.last_request.json()["eventName"] == "invoicePaymentFailed"


def test_event_does_not_send_user_id_so_loops_cannot_overwrite_the_companys_own_ids(http):
    http.post(EVENTS, json={"success": True})

    make_messenger().send(make_message(), "k")

    assert "userId" not in http.last_request.json()


def test_event_leaves_out_the_invoice_list_that_event_properties_cannot_hold(http):
    http.post(EVENTS, json={"success": True})
    other = InvoiceLine(
        invoice_id="in_2",
        number=None,
        amount_due=1250,
        currency="usd",
        hosted_invoice_url=None,
        attempt_count=1,
        next_payment_attempt=None,
    )

    make_messenger().send(make_message(other_invoices=(other,)), "k")

    properties = http.last_request.json()["eventProperties"]
    assert "invoices" not in properties
    assert properties["invoiceCount"] == 2


def test_request_carries_bearer_key_idempotency_key_and_configured_timeout(http):
    http.post(EVENTS, json={"success": True})

    make_messenger(HTTP_TIMEOUT_SECONDS="3.5").send(make_message(), "notification-17-step-1")

    request = http.last_request
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "notification-17-step-1"
    assert request.timeout == 3.5


def test_overlong_idempotency_key_becomes_a_stable_digest_within_loops_limit(http):
    http.post(EVENTS, json={"success": True})
    messenger = make_messenger()
    long_key = "notification-" + "x" * 200

    messenger.send(make_message(), long_key)
    messenger.send(make_message(), long_key)

    first, second = (r.headers["Idempotency-Key"] for r in http.request_history)
    assert len(first) <= IDEMPOTENCY_KEY_MAX
    assert first == second


def test_loops_api_base_override_is_used(http):
    http.post("https://loops.internal.test/api/v1/events/send", json={"success": True})

    make_messenger(LOOPS_API_BASE="https://loops.internal.test/api/").send(make_message(), "k")

    assert http.call_count == 1


# -- idempotency and errors -----------------------------------------------------------------------


@pytest.mark.parametrize("env, url", [({"LOOPS_TRANSACTIONAL_ID": "tx_1"}, TRANSACTIONAL), ({}, EVENTS)])
def test_retried_key_409_counts_as_already_sent(http, env, url):
    http.post(
        url,
        status_code=409,
        json={"success": False, "message": "Idempotency key already used with a different request body."},
    )

    result = make_messenger(**env).send(make_message(), "notification-17")

    assert result == SendResult(provider="loops", duplicate=True)


def test_429_with_retry_after_is_transient_and_pauses_every_sender(http):
    http.post(EVENTS, status_code=429, headers={"Retry-After": "7"}, json={"success": False, "message": "Rate limit"})
    fake = FakeTime()
    messenger = make_messenger(fake)

    with pytest.raises(TransientError) as caught:
        messenger.send(make_message(), "k")

    assert caught.value.retry_after == 7
    assert "429" in str(caught.value)
    start = fake.now
    messenger.bucket.acquire()  # the next sender through the same bucket waits out the pause
    assert fake.now - start == pytest.approx(7)


def test_429_without_retry_after_waits_one_second(http):
    http.post(EVENTS, status_code=429, json={"success": False, "message": "Rate limit exceeded"})

    with pytest.raises(TransientError) as caught:
        make_messenger().send(make_message(), "k")

    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(http, status):
    http.post(EVENTS, status_code=status, text="<html>Bad gateway</html>")

    with pytest.raises(TransientError) as caught:
        make_messenger().send(make_message(), "k")

    assert str(status) in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError],
)
def test_timeouts_and_connection_errors_are_transient(http, failure):
    http.post(EVENTS, exc=failure)

    with pytest.raises(TransientError):
        make_messenger().send(make_message(), "k")


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (
            400,
            {"success": False, "message": "Missing required data variable(s): updatePaymentUrl"},
            "Missing required data variable(s): updatePaymentUrl",
        ),
        (
            404,
            {
                "success": False,
                "message": "Transactional email not found.",
                "error": {"path": "transactionalId", "message": "Transactional email not found."},
            },
            "check LOOPS_TRANSACTIONAL_ID",
        ),
    ],
)
def test_client_errors_are_rejected_with_status_and_loops_own_words(http, status, body, expected):
    http.post(TRANSACTIONAL, status_code=status, json=body)

    with pytest.raises(MessengerRejected) as caught:
        make_messenger(LOOPS_TRANSACTIONAL_ID="tx_1").send(make_message(), "k")

    text = str(caught.value)
    assert f"HTTP {status}" in text
    assert body["message"] in text
    assert expected in text


def test_legacy_error_field_is_read_when_message_is_absent(http):
    http.post(EVENTS, status_code=400, json={"success": False, "error": "eventName is required"})

    with pytest.raises(MessengerRejected, match="eventName is required"):
        make_messenger().send(make_message(), "k")


def test_a_2xx_that_says_success_false_is_not_taken_as_sent(http):
    http.post(EVENTS, status_code=200, json={"success": False, "message": "Contact is suppressed"})

    with pytest.raises(MessengerRejected, match="Contact is suppressed"):
        make_messenger().send(make_message(), "k")


@pytest.mark.parametrize(
    "status, headers, expected",
    [
        (400, {}, MessengerRejected),
        (401, {}, ConfigurationNeeded),
        (429, {"Retry-After": "2"}, TransientError),
        (500, {}, TransientError),
    ],
)
def test_secrets_and_customer_email_never_reach_exception_text(http, status, headers, expected):
    echo = f"Bad request for {EMAIL} (key {API_KEY}); also Ada.Lovelace@Example.com"
    http.post(EVENTS, status_code=status, headers=headers, json={"success": False, "message": echo})

    with pytest.raises(expected) as caught:
        make_messenger().send(make_message(), "k")

    text = str(caught.value)
    assert API_KEY not in text
    assert "@" not in text


def test_missing_api_key_holds_the_message_without_calling_loops(http):
    settings = load_settings({"MESSAGING_PROVIDER": "loops"})
    messenger = LoopsMessenger(settings.loops, session=requests.Session())

    with pytest.raises(ConfigurationNeeded, match="LOOPS_API_KEY"):
        messenger.send(make_message(), "k")
    assert http.call_count == 0


def test_every_request_takes_a_token_from_the_shared_bucket(http):
    http.post(EVENTS, json={"success": True})
    fake = FakeTime()
    settings = load_settings({"LOOPS_API_KEY": API_KEY})
    shared = TokenBucket(1, burst=1, clock=fake.clock, sleep=fake.sleep)
    first, second = (LoopsMessenger(settings.loops, session=requests.Session(), bucket=shared) for _ in range(2))

    first.send(make_message(), "a")
    second.send(make_message(), "b")

    assert fake.sleeps == pytest.approx([1.0])


# -- check() --------------------------------------------------------------------------------------


def test_check_confirms_the_key_and_names_the_team_and_mode(http):
    http.get(f"{BASE}/v1/api-key", json={"success": True, "teamName": "Acme Billing"})

    description = make_messenger(LOOPS_TRANSACTIONAL_ID="tx_1").check()

    assert "Acme Billing" in description
    assert "tx_1" in description
    assert http.last_request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_check_with_a_bad_key_is_rejected_without_echoing_it(http):
    http.get(f"{BASE}/v1/api-key", status_code=401, json={"success": False, "message": "Invalid API key"})
    # A bad key is the operator's to fix: messages are held (ConfigurationNeeded), never dropped.

    with pytest.raises(ConfigurationNeeded) as caught:
        make_messenger().check()

    assert "401" in str(caught.value) and "Invalid API key" in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_check_when_loops_is_unreachable_is_transient(http):
    http.get(f"{BASE}/v1/api-key", exc=requests.exceptions.ConnectionError)

    with pytest.raises(TransientError):
        make_messenger().check()


def test_bad_api_key_on_send_holds_the_message_instead_of_dropping_it(http):
    http.post(TRANSACTIONAL, status_code=401, json={"success": False, "message": "Invalid API key"})

    with pytest.raises(ConfigurationNeeded) as caught:
        make_messenger(LOOPS_TRANSACTIONAL_ID="tx_1").send(make_message(), "k")

    assert "LOOPS_API_KEY" in str(caught.value) and "HTTP 401" in str(caught.value)
