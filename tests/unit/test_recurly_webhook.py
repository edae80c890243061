"""Recurly webhook verification: the `recurly-signature` header and the thin JSON envelope (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.standins.recurly import RecurlyStandIn, signed_webhook
from webhook_app.errors import WebhookRejected
from webhook_app.providers.recurly.webhook import parse_envelope, verify_signature

SECRET = "new-endpoint-secret-0123456789"
OLD_SECRET = "old-endpoint-secret-9876543210"
NOW = 1_780_000_000.0
NOW_MS = int(NOW * 1000)
PAYLOAD = {
    "id": "radnhqhipxkw",
    "object_type": "charge_invoice",
    "site_id": "radmlv3z8vl6",
    "event_type": "past_due",
    "event_time": "2026-05-27T15:34:35Z",
    "invoice_number": 1000,
}


def sign(body: bytes, secret: str, timestamp_ms: int = NOW_MS) -> str:
    return hmac.new(secret.encode(), f"{timestamp_ms}.".encode() + body, hashlib.sha256).hexdigest()


def signed(secret: str = SECRET, timestamp_ms: int = NOW_MS) -> tuple[bytes, str]:
    body, headers = signed_webhook(PAYLOAD, secret, timestamp_ms)
    return body, headers["recurly-signature"]


def refused(body: bytes, header: str | None, secrets: tuple[str, ...] = (SECRET,), **kwargs) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as exc_info:
        verify_signature(body, header, secrets, now=kwargs.pop("now", NOW), **kwargs)
    assert exc_info.value.status == 400
    return exc_info.value


# -- signature ------------------------------------------------------------------------------------------


def test_a_body_signed_with_the_configured_secret_is_accepted():
    body, header = signed()
    verify_signature(body, header, (SECRET,), now=NOW)


def test_the_stand_in_header_format_is_millis_comma_hex():
    body, header = signed()
    timestamp, signature = header.split(",")
    assert timestamp == str(NOW_MS)
    assert signature == sign(body, SECRET)


def test_any_secret_of_the_rotation_list_may_match():
    body, header = signed(OLD_SECRET)
    verify_signature(body, header, (SECRET, OLD_SECRET), now=NOW)


def test_any_signature_listed_in_the_header_may_match():
    # During a rotation Recurly sends one signature per secret; ours may be the second.
    body, _ = signed()
    header = f"{NOW_MS},{sign(body, 'some-other-secret')},{sign(body, SECRET)}"
    verify_signature(body, header, (SECRET,), now=NOW)


def test_uppercase_hex_and_spaces_after_commas_are_tolerated():
    body, _ = signed()
    verify_signature(body, f"{NOW_MS}, {sign(body, SECRET).upper()}", (SECRET,), now=NOW)


def test_a_tampered_body_is_refused():
    body, header = signed()
    tampered = body.replace(b"1000", b"1001")
    assert "no valid signature" in str(refused(tampered, header))


def test_a_body_signed_with_another_secret_is_refused():
    body, header = signed("not-our-secret")
    assert "no valid signature" in str(refused(body, header))


def test_a_signature_over_another_timestamp_is_refused():
    body, _ = signed()
    header = f"{NOW_MS + 1000},{sign(body, SECRET, NOW_MS)}"
    assert "no valid signature" in str(refused(body, header))


def test_a_stale_timestamp_is_refused_as_too_old():
    body, header = signed(timestamp_ms=NOW_MS - 301_000)
    assert "too old" in str(refused(body, header))


def test_a_far_future_timestamp_is_refused_as_future():
    body, header = signed(timestamp_ms=NOW_MS + 301_000)
    assert "in the future" in str(refused(body, header))


def test_drift_within_the_tolerance_is_accepted_both_ways():
    for drift in (-299_000, 299_000):
        body, header = signed(timestamp_ms=NOW_MS + drift)
        verify_signature(body, header, (SECRET,), now=NOW)


def test_the_tolerance_is_configurable():
    body, header = signed(timestamp_ms=NOW_MS - 61_000)
    assert "too old" in str(refused(body, header, tolerance_seconds=60))


def test_a_stale_timestamp_is_refused_even_with_a_valid_signature_for_it():
    # Replay of a captured delivery: the signature is genuine, the time is not.
    body, header = signed(timestamp_ms=NOW_MS - 3_600_000)
    assert "too old" in str(refused(body, header))


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_refused(header):
    body, _ = signed()
    assert "missing recurly-signature header" in str(refused(body, header))


def test_a_non_ascii_header_is_refused_not_a_crash():
    body, header = signed()
    assert "not ASCII" in str(refused(body, header + "\u00e9"))
    assert "not ASCII" in str(refused(body, f"{NOW_MS},{'é' * 64}"))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("abc,deadbeef", "timestamp"),
        (",".join(["1780000000000"]), "no signature"),
        ("1780000000000,not-hex", "no signature"),
        ("-1780000000000,aa", "timestamp"),
        ("t=1780000000000,v1=abc", "timestamp"),
        ("1" * 5000, "too long"),
    ],
)
def test_a_malformed_header_is_refused_with_a_reason(header, reason):
    body, _ = signed()
    assert reason in str(refused(body, header))


def test_no_configured_secret_refuses_every_delivery():
    body, header = signed()
    assert "no Recurly webhook secret" in str(refused(body, header, secrets=("",)))


def test_reasons_never_carry_a_secret_or_the_payload():
    body, header = signed("attacker-secret-123456")
    message = str(refused(body, header, secrets=(SECRET, OLD_SECRET)))
    for text in (SECRET, OLD_SECRET, "attacker-secret-123456", "radnhqhipxkw"):
        assert text not in message


# -- envelope -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        PAYLOAD,
        # Shapes from Recurly's account, invoice and dunning notification pages.
        {
            "id": "r3oplsj3zo7a",
            "object_type": "account",
            "site_id": "r23khg9b5kyb",
            "event_type": "created",
            "event_time": "2022-06-24T19:55:25Z",
            "account_code": "verena",
        },
        {
            "id": "radnhqhipxkw",
            "object_type": "dunning_event",
            "site_id": "radmlv3z8vl6",
            "event_type": "created",
            "event_time": "2022-07-27T15:34:35Z",
            "invoice_number": 1000,
        },
        {
            "id": "rbq4v3hd0s7h",
            "object_type": "payment",
            "site_id": "r23khg9b5kyb",
            "event_type": "failed",
            "event_time": "2022-07-27T15:34:35.123+00:00",
            "uuid": "5a6f7b4c1e2d4f8a9b0c1d2e3f4a5b6c",
        },
    ],
)
def test_documented_notification_shapes_are_accepted(payload):
    assert parse_envelope(json.dumps(payload).encode()) == payload


def test_the_stand_ins_notification_passes_the_envelope_check():
    payload = RecurlyStandIn.notification("charge_invoice", "paid", invoice_number=1001)
    assert parse_envelope(json.dumps(payload).encode())["invoice_number"] == 1001


def test_an_invoice_number_may_arrive_as_text():
    payload = {**PAYLOAD, "invoice_number": "EU-1000"}
    assert parse_envelope(json.dumps(payload).encode())["invoice_number"] == "EU-1000"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", None),
        ("id", "has space"),
        ("object_type", None),
        ("object_type", "Charge Invoice"),
        ("event_type", ""),
        ("event_time", None),
        ("event_time", "yesterday"),
        ("event_time", "2026-05-27T15:34:35"),  # no offset: ambiguous
        ("event_time", 1780000000),
        ("site_id", 7),
        ("account_code", "code\x00with-nul"),
        ("account_code", ""),
        ("uuid", "\ud800"),
        ("invoice_number", True),
        ("invoice_number", 0),
        ("invoice_number", {"n": 1}),
    ],
)
def test_a_malformed_envelope_field_is_refused_naming_the_field(field, value):
    payload = {**PAYLOAD, field: value}
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(json.dumps(payload).encode())
    assert exc_info.value.status == 400
    assert f"'{field}'" in str(exc_info.value)


@pytest.mark.parametrize("body", [b"", b"<xml/>", b"[]", b"\xff", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_refused_not_a_crash(body):
    with pytest.raises(WebhookRejected) as exc_info:
        parse_envelope(body)
    assert exc_info.value.status == 400
