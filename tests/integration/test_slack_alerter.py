"""SlackAlerter: requests-mock for every answer Slack gives, then one run against the served stand-in."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator

import pytest
import requests
import requests_mock

from tests.fakes import FakeTime
from tests.standins import serve
from tests.standins.slack import HOOK, SlackStandIn
from webhook_app.adapters import SendResult
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.adapters.slack import SlackAlerter, webhook_secrets
from webhook_app.alerts import Alert, AlertKind, CurrencyTotal
from webhook_app.declines import DeclineClass
from webhook_app.errors import ConfigurationNeeded, MessengerRejected, TransientError

TOKEN = "x9TestWebhookSecretToken1234"
URL = f"https://hooks.slack.com/services/T01TEST/B01TEST/{TOKEN}"
SECRETS = (URL, f"/services/T01TEST/B01TEST/{TOKEN}", TOKEN)


def large_failure(**overrides: object) -> Alert:
    fields: dict[str, object] = dict(
        kind=AlertKind.LARGE_FAILURE,
        provider="stripe",
        customer_id="cus_Big",
        customer_name="Globex <!channel> & Sons",
        invoice_id="in_1Big",
        invoice_number="GLX-0099",
        amount=125_000,
        currency="usd",
        decline_class=DeclineClass.INSUFFICIENT_FUNDS,
        decline_code="insufficient_funds",
        dashboard_url="https://dashboard.stripe.com/invoices/in_1Big",
    )
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


def make_alerter(url: str | None = URL, fake: FakeTime | None = None) -> SlackAlerter:
    fake = fake or FakeTime()
    return SlackAlerter(
        url, timeout=5.0, session=requests.Session(), bucket=TokenBucket(1.0, clock=fake.clock, sleep=fake.sleep)
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def assert_exception_is_clean(exc: BaseException) -> None:
    """Neither the message nor anything a traceback or Sentry would print carries the webhook URL."""
    assert_no_secret(str(exc))
    assert_no_secret("".join(traceback.format_exception(exc)))
    assert exc.__cause__ is None or not any(s in str(exc.__cause__) for s in SECRETS)


@pytest.fixture
def http() -> Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker() as mocker:
        yield mocker


# -- the request ----------------------------------------------------------------------------------


def test_an_alert_posts_escaped_text_and_blocks_and_ok_is_success(http: requests_mock.Mocker) -> None:
    http.post(URL, text="ok")
    result = make_alerter().send(large_failure(), "alert:large_failure:stripe:in_1Big")
    assert result == SendResult(provider="slack")
    request = http.last_request
    assert request is not None
    body = request.json()
    assert set(body) == {"text", "blocks"}
    assert "$1,250.00" in body["text"] and "GLX-0099" in body["text"]
    assert "<!channel>" not in json.dumps(body)  # a customer's name cannot ping the whole channel
    assert "&lt;!channel&gt;" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert request.headers["Content-Type"] == "application/json"


def test_no_customer_email_reaches_slack(http: requests_mock.Mocker) -> None:
    http.post(URL, text="ok")
    make_alerter().send(large_failure(customer_name="ada@example.com"), "k")
    assert http.last_request is not None and "@" not in http.last_request.text


def test_every_post_takes_a_token_at_slacks_one_per_second(http: requests_mock.Mocker) -> None:
    http.post(URL, text="ok")
    fake = FakeTime()
    alerter = make_alerter(fake=fake)
    for i in range(3):
        alerter.send(large_failure(invoice_id=f"in_{i}"), f"k{i}")
    assert len(fake.sleeps) == 2 and all(0.9 < s <= 1.0 for s in fake.sleeps)


# -- Slack's answers, classified ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,body,error",
    [
        (400, "invalid_payload", MessengerRejected),
        (400, "missing_text_or_fallback_or_attachments", MessengerRejected),
        (400, "invalid_blocks", MessengerRejected),
        (400, "invalid_token", ConfigurationNeeded),
        (400, "no_team", ConfigurationNeeded),
        (403, "action_prohibited", ConfigurationNeeded),
        (403, "posting_to_general_channel_denied", ConfigurationNeeded),
        (404, "channel_not_found", ConfigurationNeeded),
        (404, "no_service", ConfigurationNeeded),
        (410, "channel_is_archived", ConfigurationNeeded),
        (302, "", ConfigurationNeeded),
        (500, "rollup_error", TransientError),
        (503, "<html>Service Unavailable</html>", TransientError),
        (408, "", TransientError),
    ],
)
def test_each_slack_answer_is_classified(http: requests_mock.Mocker, status: int, body: str, error: type) -> None:
    http.post(URL, status_code=status, text=body)
    with pytest.raises(error) as raised:
        make_alerter().send(large_failure(), "k")
    assert type(raised.value) is error
    if error is ConfigurationNeeded:
        assert "ALERT_SLACK_WEBHOOK_URL" in str(raised.value)
    if body and body.isidentifier():
        assert body in str(raised.value)  # Slack's own code is named for the operator
    assert_exception_is_clean(raised.value)


def test_a_429_pauses_every_sender_for_slacks_retry_after(http: requests_mock.Mocker) -> None:
    http.post(URL, [{"status_code": 429, "text": "rate_limited", "headers": {"Retry-After": "7"}}, {"text": "ok"}])
    fake = FakeTime()
    alerter = make_alerter(fake=fake)
    with pytest.raises(TransientError) as raised:
        alerter.send(large_failure(), "k")
    assert raised.value.retry_after == 7
    alerter.send(large_failure(), "k")  # the retry waits out the pause first
    assert sum(fake.sleeps) >= 7


def test_a_429_without_retry_after_waits_a_second(http: requests_mock.Mocker) -> None:
    http.post(URL, status_code=429, text="rate_limited")
    with pytest.raises(TransientError) as raised:
        make_alerter().send(large_failure(), "k")
    assert raised.value.retry_after == 1.0


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectTimeout(f"HTTPSConnectionPool(host='hooks.slack.com'): timed out for url {URL}"),
        requests.ConnectionError(f"Max retries exceeded with url: /services/T01TEST/B01TEST/{TOKEN}"),
        requests.ReadTimeout(f"Read timed out. (url={URL})"),
    ],
)
def test_network_failures_are_transient_and_never_carry_the_url(http: requests_mock.Mocker, failure: Exception) -> None:
    http.post(URL, exc=failure)
    with pytest.raises(TransientError) as raised:
        make_alerter().send(large_failure(), "k")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert_exception_is_clean(raised.value)


def test_an_error_body_echoing_the_url_is_scrubbed(http: requests_mock.Mocker) -> None:
    http.post(URL, status_code=400, text=f"bad request to {URL}")
    with pytest.raises(MessengerRejected) as raised:
        make_alerter().send(large_failure(), "k")
    assert_exception_is_clean(raised.value)


@pytest.mark.parametrize("url", [None, "", "   "])
def test_an_unset_url_holds_the_alert_naming_the_setting(http: requests_mock.Mocker, url: str | None) -> None:
    with pytest.raises(ConfigurationNeeded, match="ALERT_SLACK_WEBHOOK_URL is not set"):
        make_alerter(url).send(large_failure(), "k")
    assert not http.called


@pytest.mark.parametrize(
    "url",
    ["hooks.slack.com/services/x9NotAUrlSecret99", "ftp://hooks.slack.com/x9Secret1", "https:///services/x9SecretPath"],
)
def test_a_malformed_url_holds_the_alert_without_echoing_it(http: requests_mock.Mocker, url: str) -> None:
    with pytest.raises(ConfigurationNeeded, match="ALERT_SLACK_WEBHOOK_URL") as raised:
        make_alerter(url).send(large_failure(), "k")
    assert url not in str(raised.value) and "Secret" not in str(raised.value)
    assert not http.called


def test_no_log_line_and_no_repr_carries_the_url(http: requests_mock.Mocker, caplog: pytest.LogCaptureFixture) -> None:
    http.post(URL, [{"text": "ok"}, {"status_code": 404, "text": "no_service"}])
    alerter = make_alerter()
    with caplog.at_level(logging.DEBUG):
        alerter.send(large_failure(), "k1")
        with pytest.raises(ConfigurationNeeded):
            alerter.send(large_failure(), "k2")
    ours = [record for record in caplog.records if record.name.startswith("webhook_app")]
    assert ours  # the success was logged ...
    for record in ours:
        assert_no_secret(record.getMessage())  # ... without the URL
    # (HTTP libraries' own DEBUG lines print the URL or its path: webhook_secrets() lists what to mask.)
    assert_no_secret(repr(alerter))


def test_webhook_secrets_cover_the_url_its_path_and_its_token() -> None:
    assert webhook_secrets(URL) == SECRETS
    assert webhook_secrets(None) == ()


def test_check_does_not_post(http: requests_mock.Mocker) -> None:
    assert "hooks.slack.com" in make_alerter().check()
    assert not http.called
    with pytest.raises(ConfigurationNeeded):
        make_alerter(None).check()


# -- against the served stand-in -----------------------------------------------------------------------


def test_alerts_against_the_served_slack_stand_in() -> None:
    standin = SlackStandIn()
    served = serve(standin.app)
    try:
        fake = FakeTime()
        alerter = make_alerter(standin.url(served.url), fake=fake)
        digest = Alert(
            AlertKind.DIGEST,
            period="2026-05-18",
            totals=(CurrencyTotal("usd", 250_000, 5, 120_000, 2, 130_000, 3), CurrencyTotal("jpy", 50_000, 1)),
        )
        assert alerter.send(large_failure(), "alert:large_failure:stripe:in_1Big").provider == "slack"
        assert alerter.send(digest, "alert:digest:2026-05-18").provider == "slack"
        assert [post["path"] for post in standin.posts] == [HOOK, HOOK]
        assert "¥50,000" in standin.posts[1]["body"]["text"]

        standin.script.append((429, "rate_limited", {"Retry-After": "3"}))
        with pytest.raises(TransientError) as raised:
            alerter.send(large_failure(), "k")
        assert raised.value.retry_after == 3

        standin.archived.add(HOOK)
        with pytest.raises(ConfigurationNeeded, match="channel_is_archived"):
            alerter.send(large_failure(), "k")
        standin.revoked.add(HOOK)
        with pytest.raises(ConfigurationNeeded, match="no_service") as revoked:
            alerter.send(large_failure(), "k")
        assert standin.url(served.url) not in str(revoked.value)
        assert len(standin.posts) == 2  # nothing was recorded for the refused posts
    finally:
        served.stop()


def test_the_stand_in_refuses_what_slack_refuses() -> None:
    standin = SlackStandIn()
    served = serve(standin.app)
    try:
        url = standin.url(served.url)
        assert requests.post(url, json={"text": "hi"}, timeout=5).text == "ok"
        assert requests.post(url, data="{not json", timeout=5).text == "invalid_payload"
        assert requests.post(url, json={"username": "x"}, timeout=5).text == "missing_text_or_fallback_or_attachments"
        assert requests.post(url, json={"blocks": [{"no": "type"}]}, timeout=5).text == "invalid_blocks"
        missing = requests.post(served.url + "/services/T/B/unknown", json={"text": "hi"}, timeout=5)
        assert (missing.status_code, missing.text) == (404, "no_service")
    finally:
        served.stop()
