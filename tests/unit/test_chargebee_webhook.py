"""Chargebee webhook verification: basic-auth credentials, then the event envelope (pure functions)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.standins.chargebee import ChargebeeStandIn
from webhook_app.errors import WebhookRejected
from webhook_app.providers.chargebee import webhook
from webhook_app.providers.chargebee.webhook import check_basic_auth, parse_envelope

USERNAME = "cb-hooks"
PASSWORD = "s3cret:with-colon"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def rejection(exc_info: pytest.ExceptionInfo[WebhookRejected]) -> tuple[int, str]:
    return exc_info.value.status, str(exc_info.value)


# -- basic auth -------------------------------------------------------------------------------------------


def test_matching_username_and_password_are_accepted():
    check_basic_auth(basic(USERNAME, PASSWORD), USERNAME, PASSWORD)


def test_scheme_is_case_insensitive_and_surrounding_space_is_ignored():
    header = "  basic " + basic(USERNAME, PASSWORD).split(" ", 1)[1] + " "
    check_basic_auth(header, USERNAME, PASSWORD)


def test_utf8_password_is_compared_as_bytes():
    check_basic_auth(basic(USERNAME, "pässwörd"), USERNAME, "pässwörd")


def test_wrong_password_is_refused_with_401():
    with pytest.raises(WebhookRejected) as exc_info:
        check_basic_auth(basic(USERNAME, "guess"), USERNAME, PASSWORD)
    assert rejection(exc_info) == (401, "wrong webhook credentials")


def test_wrong_username_gets_the_same_answer_as_a_wrong_password():
    with pytest.raises(WebhookRejected) as wrong_user:
        check_basic_auth(basic("someone", PASSWORD), USERNAME, PASSWORD)
    with pytest.raises(WebhookRejected) as wrong_password:
        check_basic_auth(basic(USERNAME, "guess"), USERNAME, PASSWORD)
    assert rejection(wrong_user) == rejection(wrong_password)


def test_both_parts_are_compared_even_when_the_username_is_already_wrong(monkeypatch):
    calls = []
    real = webhook.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    with pytest.raises(WebhookRejected):
        check_basic_auth(basic("someone", "guess"), USERNAME, PASSWORD)
    assert len(calls) == 2  # no early exit after the username mismatch


@pytest.mark.parametrize("header", [None, ""])
def test_missing_authorization_header_is_refused_with_401(header):
    with pytest.raises(WebhookRejected) as exc_info:
        check_basic_auth(header, USERNAME, PASSWORD)
    assert exc_info.value.status == 401
    assert "missing Authorization header" in str(exc_info.value)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + "A" * 5000,
        "Basic dXNlcjpwYXNz\u00e9",  # non-ASCII
    ],
)
def test_malformed_authorization_header_is_refused_with_401_not_a_crash(header):
    with pytest.raises(WebhookRejected) as exc_info:
        check_basic_auth(header, USERNAME, PASSWORD)
    assert exc_info.value.status == 401


@pytest.mark.parametrize(("username", "password"), [("", PASSWORD), (USERNAME, ""), ("", "")])
def test_unconfigured_credentials_refuse_every_delivery(username, password):
    # Fail closed: an empty expected password must not match a request that sends an empty password.
    with pytest.raises(WebhookRejected) as exc_info:
        check_basic_auth(basic(username, password), username, password)
    assert exc_info.value.status == 401
    assert "not configured" in str(exc_info.value)


def test_rejection_reason_never_echoes_the_credentials():
    with pytest.raises(WebhookRejected) as exc_info:
        check_basic_auth(basic("attacker-user", "attacker-pass"), USERNAME, PASSWORD)
    for secret in ("attacker-user", "attacker-pass", USERNAME, PASSWORD):
        assert secret not in str(exc_info.value)


# -- envelope -----------------------------------------------------------------------------------------


def event(**overrides) -> dict:
    body = {
        "id": "ev_16BHbhF4s42tO2lK",
        "occurred_at": 1_780_000_000,
        "source": "scheduled_job",
        "object": "event",
        "api_version": "v2",
        "content": {"invoice": {"id": "inv_1", "status": "payment_due", "amount_due": 4900}},
        "event_type": "payment_failed",
        "webhook_status": "scheduled",
    }
    body.update(overrides)
    return body


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def test_a_well_formed_event_is_returned_as_a_dict():
    parsed = parse_envelope(encode(event()))
    assert parsed["id"] == "ev_16BHbhF4s42tO2lK"
    assert parsed["event_type"] == "payment_failed"
    assert parsed["content"]["invoice"]["amount_due"] == 4900


def test_the_stand_ins_webhook_body_passes_the_envelope_check():
    standin = ChargebeeStandIn()
    customer = standin.add_customer()
    invoice = standin.add_invoice(customer_id=customer["id"])
    sent = standin.add_invoice_event("payment_failed", invoice["id"])

    parsed = parse_envelope(standin.webhook_body(sent))

    assert parsed == sent


def test_test_site_event_ids_are_accepted():
    assert parse_envelope(encode(event(id="ev___test__5SK0bLNFRFuFFZLf3")))["id"] == "ev___test__5SK0bLNFRFuFFZLf3"


@pytest.mark.parametrize("api_version", ["v1", None, 2])
def test_an_event_not_in_api_v2_is_refused(api_version):
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(encode(event(api_version=api_version)))
    assert exc_info.value.status == 400
    assert "api_version" in str(exc_info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", None),
        ("id", ""),
        ("id", "ev with space"),
        ("id", "ev_\u00e9"),
        ("id", "ev_\x00"),
        ("id", "e" * 256),
        ("id", 42),
        ("event_type", None),
        ("event_type", "Payment Failed"),
        ("event_type", "x" * 101),
        ("occurred_at", None),
        ("occurred_at", "1780000000"),
        ("occurred_at", True),
        ("occurred_at", 0),
        ("occurred_at", 1.5),
        ("content", None),
        ("content", []),
        ("object", "invoice"),
    ],
)
def test_a_malformed_envelope_field_is_refused_naming_the_field(field, value):
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(encode(event(**{field: value})))
    assert exc_info.value.status == 400
    assert f"'{field}'" in str(exc_info.value)


def test_a_missing_envelope_field_is_refused():
    body = event()
    del body["occurred_at"]
    with pytest.raises(WebhookRejected, match="occurred_at"):
        parse_envelope(encode(body))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"event"', b"[" * 100_000 + b"]" * 100_000],
)
def test_a_body_that_is_not_a_json_object_is_refused_not_a_crash(body):
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(body)
    assert exc_info.value.status == 400


def test_the_reason_never_echoes_payload_values():
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(encode(event(id="ada@example.com is here", api_version="v2")))
    assert "ada@example.com" not in str(exc_info.value)
