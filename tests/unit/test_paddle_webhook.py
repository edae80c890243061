"""Paddle webhook verification (`Paddle-Signature: ts=…;h1=…`) and envelope parsing, as pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from paddle_billing.Notifications.PaddleSignature import PaddleSignature
from paddle_billing.Notifications.Secret import Secret

from tests.standins.paddle import PaddleStandIn, signed_webhook
from webhook_app.errors import WebhookRejected
from webhook_app.providers.paddle.webhook import parse_envelope, sign, verify_signature

SECRET = "pdl_ntfset_01hnew000000000000000000000_newsecretvalue"
OLD_SECRET = "pdl_ntfset_01hold000000000000000000000_oldsecretvalue"
NOW = 1_760_000_000


def envelope(**overrides) -> dict:
    event = {
        "event_id": "evt_01hv8wx4vr9w6zsv6xss0b8az9",
        "event_type": "transaction.payment_failed",
        "occurred_at": "2024-04-12T10:16:00.120972Z",
        "notification_id": "ntf_01hv8wx4ywcj8pptnpeq1rrvzm",
        "data": {"id": "txn_01hv8wptq8987qeep44cyrewp9", "status": "past_due"},
    }
    event.update(overrides)
    return event


def delivery(secret: str = SECRET, ts: int = NOW, event: dict | None = None) -> tuple[bytes, str]:
    body, headers = signed_webhook(event or envelope(), secret, ts)
    return body, headers["Paddle-Signature"]


def rejected(body: bytes, header: str | None, secrets=(SECRET,), now: float = NOW) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        verify_signature(body, header, secrets, now=now)
    return info.value


# -- signatures -----------------------------------------------------------------------------------


def test_genuine_delivery_is_accepted():
    body, header = delivery()
    assert verify_signature(body, header, (SECRET,), now=NOW) is None


def test_our_signature_matches_the_paddle_sdks_and_the_stand_ins():
    body, header = delivery()
    # The SDK's own check (PaddleSignature.verify, no timestamp check) accepts what the stand-in signs,
    # and our `sign` produces the same h1: all three agree on HMAC-SHA256(secret, f"{ts}:{body}").
    assert PaddleSignature().verify(header, body.decode(), Secret(SECRET)) is True
    assert header == f"ts={NOW};h1={sign(body, SECRET, NOW)}"


def test_tampered_body_is_refused_without_naming_the_secret():
    body, header = delivery()
    error = rejected(body.replace(b"past_due", b"completed"), header)
    assert "no valid signature" in str(error)
    assert error.status == 400  # a signature problem, not credentials: no WWW-Authenticate challenge
    assert SECRET not in str(error)


def test_signature_made_with_another_secret_is_refused():
    body, header = delivery(secret="pdl_ntfset_someone_elses_secret_0000")
    assert "no valid signature" in str(rejected(body, header))


def test_rotation_any_configured_secret_and_any_h1_in_the_header_verify():
    body, old_header = delivery(secret=OLD_SECRET)
    # Old deliveries still verify while both secrets are configured...
    verify_signature(body, old_header, (SECRET, OLD_SECRET), now=NOW)
    # ...and a header carrying one h1 per secret verifies with the new secret alone.
    both = f"{old_header};h1={sign(body, SECRET, NOW)}"
    verify_signature(body, both, (SECRET,), now=NOW)
    assert "no valid signature" in str(rejected(body, old_header, secrets=(SECRET,)))


def test_stale_and_future_timestamps_are_refused_with_distinct_reasons():
    body, header = delivery(ts=NOW)
    stale = rejected(body, header, now=NOW + 301)
    future = rejected(body, header, now=NOW - 301)
    assert "too old" in str(stale)
    assert "in the future" in str(future)
    # Inside the 300 s tolerance both ways it is fine (the SDK's default would refuse after 5 s).
    verify_signature(body, header, (SECRET,), now=NOW + 300)
    verify_signature(body, header, (SECRET,), now=NOW - 300)


def test_a_forged_signature_is_refused_as_forged_even_when_also_stale():
    body, header = delivery(secret="pdl_ntfset_forger_000000000000")
    assert "no valid signature" in str(rejected(body, header, now=NOW + 10_000))


def test_tolerance_is_configurable():
    body, header = delivery(ts=NOW)
    with pytest.raises(WebhookRejected, match="too old"):
        verify_signature(body, header, (SECRET,), tolerance_seconds=5, now=NOW + 6)


def test_uppercase_hex_and_unknown_schemes_are_tolerated():
    body, header = delivery()
    ts_part, h1_part = header.split(";")
    verify_signature(body, f"{ts_part};{h1_part.upper().replace('H1=', 'h1=')};h2=somethingnew", (SECRET,), now=NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("ts=;h1=" + "0" * 64, "timestamp"),
        ("ts=abc;h1=" + "0" * 64, "timestamp"),
        (f"ts={NOW};ts={NOW};h1=" + "0" * 64, "timestamp"),
        (f"ts={NOW}", "no h1"),
        ("h1=" + "0" * 64, "no timestamp"),
        (f"ts={NOW};h1=é" + "0" * 63, "not printable ASCII"),
        (f"ts={NOW};h1=\x00" + "0" * 63, "not printable ASCII"),
        (f"ts={NOW};h1=a=b", "no valid signature"),
        (f"ts={NOW};h1=" + "0" * 5000, "too long"),
        (f"ts={NOW};h1=" + "zz" * 32, "no valid signature"),
    ],
)
def test_malformed_headers_are_refused_cleanly(header, reason):
    # Each of these made the SDK's parser raise ValueError/TypeError (a 500 Paddle would retry for days).
    body, _ = delivery()
    error = rejected(body, header)
    assert reason in str(error)


def test_no_configured_secret_refuses_every_delivery():
    body, header = delivery()
    assert "no Paddle webhook secret" in str(rejected(body, header, secrets=()))


def test_empty_secret_in_the_list_never_verifies_anything():
    body = b"{}"
    header = f"ts={NOW};h1={sign(body, '', NOW)}"
    assert "no valid signature" in str(rejected(body, header, secrets=("",)))


# -- envelope -------------------------------------------------------------------------------------


def test_envelope_fields_are_returned_with_an_aware_occurred_at():
    event = parse_envelope(json.dumps(envelope()).encode())
    assert event["event_id"] == "evt_01hv8wx4vr9w6zsv6xss0b8az9"
    assert event["event_type"] == "transaction.payment_failed"
    assert event["occurred_at"] == datetime(2024, 4, 12, 10, 16, 0, 120972, tzinfo=UTC)
    assert event["notification_id"] == "ntf_01hv8wx4ywcj8pptnpeq1rrvzm"
    assert event["data"]["id"] == "txn_01hv8wptq8987qeep44cyrewp9"


def test_notification_id_is_optional_and_nanosecond_times_are_read():
    event = parse_envelope(
        json.dumps(envelope(notification_id=None, occurred_at="2025-04-25T11:31:14.986430069Z")).encode()
    )
    assert event["notification_id"] is None
    assert event["occurred_at"].microsecond == 986430


def test_stand_in_events_parse():
    standin = PaddleStandIn()
    customer = standin.add_customer()
    sub = standin.add_subscription(customer["id"])
    txn = standin.fail_renewal(sub["id"])
    event = parse_envelope(json.dumps(standin.event("transaction.past_due", txn)).encode())
    assert event["event_type"] == "transaction.past_due"
    assert event["data"]["details"]["totals"]["grand_total"] == "4900"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(envelope(event_id=None)).encode(), "event_id"),
        (json.dumps(envelope(event_id="ntf_01hv8wx4")).encode(), "event_id"),
        (json.dumps(envelope(event_id="evt_\u0000x")).encode(), "event_id"),
        (json.dumps(envelope(event_type="")).encode(), "event_type"),
        (json.dumps(envelope(event_type="transaction.payment failed")).encode(), "event_type"),
        (json.dumps(envelope(event_type=7)).encode(), "event_type"),
        (json.dumps(envelope(occurred_at="yesterday")).encode(), "occurred_at"),
        (json.dumps(envelope(occurred_at="2024-04-12T10:16:00")).encode(), "time zone"),
        (json.dumps(envelope(data=[])).encode(), "data"),
        (json.dumps(envelope(notification_id="evt_01hv8")).encode(), "notification_id"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_malformed_envelopes_are_refused_naming_the_field(body, field):
    with pytest.raises(WebhookRejected) as info:
        parse_envelope(body)
    assert field in str(info.value)
