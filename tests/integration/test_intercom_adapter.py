"""IntercomMessenger against a requests-mock stand-in for https://api.intercom.io (no patching of our code)."""

from __future__ import annotations

import calendar
import time
from datetime import datetime

import pytest
import requests
import requests_mock

from tests.fakes import FakeTime
from webhook_app.adapters import InvoiceLine, Message, SendResult
from webhook_app.adapters.intercom import INTERCOM_VERSION, METADATA_LIMIT, IntercomMessenger
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.config import load_settings
from webhook_app.errors import ConfigurationNeeded, MessengerRejected, TransientError

TOKEN = "dG9rOmFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6MDEyMzQ1Njc4OQ=="
BASE = "https://api.intercom.io"
EMAIL = "ada@example.com"
CREATED_AT = datetime(2026, 5, 18, 9, 30, 0)
CONTRACT_KEYS = {
    "update_payment_url",
    "amount_due",
    "invoice_id",
    "invoice_number",
    "hosted_invoice_url",
    "attempt_count",
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
        created_at=CREATED_AT,
        step=1,
        is_final_notice=False,
    )
    fields.update(overrides)
    return Message(**fields)


def make_messenger(fake: FakeTime | None = None, **env) -> IntercomMessenger:
    settings = load_settings({"INTERCOM_ACCESS_TOKEN": TOKEN, **env})
    fake = fake or FakeTime()
    bucket = TokenBucket(100, clock=fake.clock, sleep=fake.sleep)
    return IntercomMessenger(settings.intercom, session=requests.Session(), bucket=bucket)


class FakeIntercom:
    """Answers /contacts/search from a list of stored contacts, the way Intercom matches `=`."""

    def __init__(self, mocker: requests_mock.Mocker, base: str = BASE, contacts: list[dict] | None = None):
        self.contacts = contacts or []
        self.searches: list[dict] = []
        self.events = mocker.post(f"{base}/events", status_code=202, text="")
        self.created = mocker.post(f"{base}/contacts", json=self._create)
        mocker.post(f"{base}/contacts/search", json=self._search)

    def _search(self, request, context):
        query = request.json()["query"]
        self.searches.append(query)
        data = [c for c in self.contacts if c.get(query["field"]) == query["value"]]
        return {"type": "list", "data": data, "total_count": len(data)}

    def _create(self, request, context):
        contact = {"type": "contact", "id": "new-contact-1", **request.json()}
        self.contacts.append(contact)
        return contact

    @property
    def last_event(self) -> dict:
        return self.events.last_request.json()


@pytest.fixture
def http():
    with requests_mock.Mocker() as mocker:
        yield mocker


# -- finding the contact --------------------------------------------------------------------------


def test_contact_found_by_stripe_customer_id_receives_the_event(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c-ext", "role": "user", "external_id": "cus_ABC", "email": EMAIL}])

    result = make_messenger().send(make_message(), "notification-17")

    assert result == SendResult(provider="intercom", message_id=None, duplicate=False)
    assert intercom.searches == [{"field": "external_id", "operator": "=", "value": "cus_ABC"}]
    assert intercom.last_event["id"] == "c-ext"
    assert not intercom.created.called


def test_contact_found_by_email_when_no_contact_has_the_customer_id(http):
    intercom = FakeIntercom(
        http, contacts=[{"id": "c-mail", "role": "user", "external_id": "app-user-9", "email": EMAIL}]
    )

    make_messenger().send(make_message(), "k")

    assert [q["field"] for q in intercom.searches] == ["external_id", "email"]
    assert intercom.last_event["id"] == "c-mail"
    assert not intercom.created.called


def test_email_search_prefers_the_user_over_a_lead_with_the_same_address(http):
    intercom = FakeIntercom(
        http,
        contacts=[{"id": "lead-1", "role": "lead", "email": EMAIL}, {"id": "user-1", "role": "user", "email": EMAIL}],
    )

    make_messenger().send(make_message(), "k")

    assert intercom.last_event["id"] == "user-1"


def test_missing_contact_is_created_as_a_user_with_customer_id_and_email(http):
    intercom = FakeIntercom(http)

    make_messenger().send(make_message(), "k")

    assert intercom.created.last_request.json() == {
        "role": "user",
        "external_id": "cus_ABC",
        "email": EMAIL,
        "name": "Ada Lovelace",
    }
    assert intercom.last_event["id"] == "new-contact-1"


def test_creation_conflict_uses_the_existing_contact_search_had_not_indexed_yet(http):
    intercom = FakeIntercom(http)
    http.post(
        f"{BASE}/contacts",
        status_code=409,
        json={
            "type": "error.list",
            "request_id": "80ec9d92",
            "errors": [
                {
                    "code": "conflict",
                    "message": "A contact matching those details already exists with id=5da6f18e3d7cf967e4582d05",
                }
            ],
        },
    )

    make_messenger().send(make_message(), "k")

    assert intercom.last_event["id"] == "5da6f18e3d7cf967e4582d05"


def test_creation_conflict_with_an_archived_contact_is_rejected_with_advice(http):
    FakeIntercom(http)
    http.post(
        f"{BASE}/contacts",
        status_code=409,
        json={
            "type": "error.list",
            "errors": [
                {
                    "code": "conflict",
                    "message": "An archived contact matching those details already exists with id=5da6f18e3d7c",
                }
            ],
        },
    )

    with pytest.raises(MessengerRejected, match="archived"):
        make_messenger().send(make_message(), "k")


# -- the event ------------------------------------------------------------------------------------


def test_event_uses_configured_name_and_the_messages_creation_time(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])

    make_messenger(INTERCOM_EVENT_NAME="invoice-payment-failed").send(make_message(), "k")

    event = intercom.last_event
    assert event["event_name"] == "invoice-payment-failed"
    assert event["created_at"] == calendar.timegm(CREATED_AT.timetuple())


def test_metadata_has_the_contract_names_and_at_most_ten_keys(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])

    make_messenger().send(make_message(step=3, is_final_notice=True), "k")

    metadata = intercom.last_event["metadata"]
    assert len(metadata) <= METADATA_LIMIT
    assert metadata.keys() >= CONTRACT_KEYS
    assert metadata["update_payment_url"] == {
        "url": "https://pay.example.com/r/tok123",
        "value": "Update payment method",
    }
    assert metadata["amount_due"] == {"amount": 4900, "currency": "usd"}
    assert metadata["invoice_id"] == "in_1Qx"
    assert metadata["invoice_number"] == "ACME-0042"
    assert metadata["hosted_invoice_url"] == "https://invoice.stripe.com/i/acct_1/test_abc"
    assert metadata["attempt_count"] == 2
    assert metadata["step"] == 3
    assert metadata["is_final_notice"] == "true"
    assert metadata["message_kind"] == "payment_failed"


def test_metadata_leaves_out_values_the_invoice_does_not_have(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])
    draft = InvoiceLine(
        invoice_id="in_2",
        number=None,
        amount_due=500,
        currency="jpy",
        hosted_invoice_url=None,
        attempt_count=1,
        next_payment_attempt=None,
    )

    make_messenger().send(make_message(invoice=draft), "k")

    metadata = intercom.last_event["metadata"]
    assert "invoice_number" not in metadata and "hosted_invoice_url" not in metadata
    assert metadata["amount_due"] == {"amount": 500, "currency": "jpy"}  # Stripe minor units, untouched


def test_retried_send_repeats_created_at_and_metadata_so_intercom_drops_the_duplicate(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])
    messenger = make_messenger()

    messenger.send(make_message(), "notification-17")
    messenger.send(make_message(), "notification-17")

    first, second = (r.json() for r in intercom.events.request_history)
    assert first == second


def test_requests_pin_the_api_version_and_ask_for_json(http):
    intercom = FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])

    make_messenger(HTTP_TIMEOUT_SECONDS="4").send(make_message(), "k")

    for request in http.request_history:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Intercom-Version"] == INTERCOM_VERSION
        assert request.headers["Accept"] == "application/json"
        assert request.timeout == 4
    assert intercom.events.called


def test_eu_workspace_is_reached_through_intercom_api_base(http):
    intercom = FakeIntercom(
        http, base="https://api.eu.intercom.io", contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}]
    )

    make_messenger(INTERCOM_API_BASE="https://api.eu.intercom.io").send(make_message(), "k")

    assert intercom.events.called
    assert all(r.netloc == "api.eu.intercom.io" for r in http.request_history)


def test_every_request_of_a_send_takes_a_token_from_the_app_bucket(http):
    FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "email": EMAIL}])
    fake = FakeTime()
    settings = load_settings({"INTERCOM_ACCESS_TOKEN": TOKEN})
    messenger = IntercomMessenger(
        settings.intercom,
        session=requests.Session(),
        bucket=TokenBucket(1, burst=1, clock=fake.clock, sleep=fake.sleep),
    )

    messenger.send(make_message(), "k")  # search by external_id, search by email, event

    assert fake.sleeps == pytest.approx([1.0, 1.0])


# -- errors ---------------------------------------------------------------------------------------


def test_429_uses_the_rate_limit_reset_and_pauses_the_app_bucket(http):
    http.post(
        f"{BASE}/contacts/search",
        status_code=429,
        headers={
            "X-RateLimit-Limit": "1666",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + 8),
        },
        json={
            "type": "error.list",
            "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 1666 in 10_seconds"}],
        },
    )
    fake = FakeTime()
    messenger = make_messenger(fake)

    with pytest.raises(TransientError) as caught:
        messenger.send(make_message(), "k")

    assert 6 <= caught.value.retry_after <= 8
    start = fake.now
    messenger.bucket.acquire()
    assert fake.now - start == pytest.approx(caught.value.retry_after)


def test_429_prefers_retry_after_when_intercom_sends_it(http):
    http.post(
        f"{BASE}/contacts/search",
        status_code=429,
        headers={"Retry-After": "3"},
        json={"type": "error.list", "errors": [{"code": "rate_limit_exceeded"}]},
    )

    with pytest.raises(TransientError) as caught:
        make_messenger().send(make_message(), "k")

    assert caught.value.retry_after == 3


def test_server_error_on_the_event_is_transient(http):
    FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])
    http.post(
        f"{BASE}/events",
        status_code=503,
        json={"type": "error.list", "errors": [{"code": "service_unavailable", "message": "Try later"}]},
    )

    with pytest.raises(TransientError, match="503"):
        make_messenger().send(make_message(), "k")


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError])
def test_timeouts_and_connection_errors_are_transient(http, failure):
    http.post(f"{BASE}/contacts/search", exc=failure)

    with pytest.raises(TransientError):
        make_messenger().send(make_message(), "k")


@pytest.mark.parametrize(
    "status, error",
    [
        (400, {"code": "parameter_invalid", "message": "Event name is invalid"}),
        (404, {"code": "not_found", "message": "User Not Found"}),
    ],
)
def test_client_errors_are_rejected_with_intercoms_code_message_and_request_id(http, status, error):
    FakeIntercom(http, contacts=[{"id": "c1", "role": "user", "external_id": "cus_ABC"}])
    http.post(
        f"{BASE}/events", status_code=status, json={"type": "error.list", "request_id": "req-123", "errors": [error]}
    )

    with pytest.raises(MessengerRejected) as caught:
        make_messenger().send(make_message(), "k")

    text = str(caught.value)
    assert f"HTTP {status}" in text
    assert error["code"] in text and error["message"] in text
    assert "req-123" in text


@pytest.mark.parametrize(
    "status, expected", [(400, MessengerRejected), (401, ConfigurationNeeded), (500, TransientError)]
)
def test_secrets_and_customer_email_never_reach_exception_text(http, status, expected):
    echo = f"Contact {EMAIL} not valid for token {TOKEN}"
    http.post(
        f"{BASE}/contacts/search",
        status_code=status,
        json={"type": "error.list", "errors": [{"code": "bad_request", "message": echo}]},
    )

    with pytest.raises(expected) as caught:
        make_messenger().send(make_message(), "k")

    text = str(caught.value)
    assert TOKEN not in text
    assert "@" not in text


def test_missing_access_token_holds_the_message_without_calling_intercom(http):
    messenger = IntercomMessenger(
        load_settings({"MESSAGING_PROVIDER": "intercom"}).intercom, session=requests.Session()
    )

    with pytest.raises(ConfigurationNeeded, match="INTERCOM_ACCESS_TOKEN"):
        messenger.send(make_message(), "k")
    assert http.call_count == 0


# -- check() --------------------------------------------------------------------------------------


def test_check_names_the_workspace_without_the_admins_email(http):
    http.get(
        f"{BASE}/me",
        json={
            "type": "admin",
            "id": "1295",
            "email": "jdoe@example.com",
            "app": {"type": "app", "id_code": "abc123", "name": "Acme", "region": "US"},
        },
    )

    description = make_messenger().check()

    assert "Acme (abc123)" in description
    assert INTERCOM_VERSION in description
    assert "@" not in description


def test_check_with_an_invalid_token_is_rejected(http):
    http.get(
        f"{BASE}/me",
        status_code=401,
        json={"type": "error.list", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]},
    )

    with pytest.raises(ConfigurationNeeded) as caught:
        make_messenger().check()

    assert "401" in str(caught.value) and "Access Token Invalid" in str(caught.value)
    assert TOKEN not in str(caught.value)
