"""Braintree webhook parsing through the SDK: signatures, key rotation, malformed forms, the dedupe id."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import braintree
import pytest

from tests.standins.braintree import PRIVATE_KEY, PUBLIC_KEY, BraintreeStandIn, webhook_signature
from webhook_app.errors import WebhookRejected
from webhook_app.providers.braintree.webhook import dedupe_id, gateway_for, parse_form, parse_notification

KEYS = [(PUBLIC_KEY, PRIVATE_KEY)]
KIND = braintree.WebhookNotification.Kind


@pytest.fixture
def standin():
    standin = BraintreeStandIn()
    customer = standin.add_customer(email="ada@example.com")
    sub = standin.add_subscription(customer["id"], subscription_id="sub_ada", price="49.99")
    standin.fail_charge(sub["id"])
    return standin


def refused(form: dict, keys=KEYS) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        parse_form(form, keys)
    return info.value


def test_genuine_notification_gives_kind_timestamp_and_the_full_subscription(standin):
    when = datetime(2026, 5, 18, 9, 30, tzinfo=UTC)
    parsed = parse_form(standin.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada", when), KEYS)
    assert parsed["kind"] == "subscription_charged_unsuccessfully"
    assert parsed["timestamp"] == when
    sub = parsed["subscription"]
    assert (sub["id"], sub["status"], sub["balance"], sub["balance_minor"]) == ("sub_ada", "Past Due", "49.99", 4999)
    assert sub["failure_count"] == 1
    assert sub["currency"] == "USD"
    newest = sub["transactions"][0]
    assert newest["status"] == "processor_declined"
    assert newest["customer_details"] == {"id": sub["customer_id"], "email": "ada@example.com"}
    assert parsed["event_id"] == f"subscription_charged_unsuccessfully:2026-05-18T09:30:00Z:sub_ada:{newest['id']}"


def test_the_sdks_own_skeletal_sample_parses_too():
    gateway = gateway_for(PUBLIC_KEY, PRIVATE_KEY)
    sample = gateway.webhook_testing.sample_notification(KIND.SubscriptionWentPastDue, "sub_x")
    parsed = parse_notification([gateway], sample["bt_signature"], sample["bt_payload"])
    # No status, balance or currency in the SDK's sample: the dict says so with None, not a crash.
    assert parsed["subscription"]["id"] == "sub_x"
    assert parsed["subscription"]["status"] is None
    assert parsed["event_id"].startswith("subscription_went_past_due:")


def test_tampered_payload_is_refused(standin):
    form = standin.sample_notification(KIND.SubscriptionWentActive, "sub_ada")
    xml = base64.b64decode(form["bt_payload"]).replace(b"Past Due", b"Active..")
    error = refused({**form, "bt_payload": base64.encodebytes(xml).decode()})
    assert "signature does not match" in str(error)
    assert error.status == 400


def test_signature_from_other_keys_is_refused(standin):
    form = standin.sample_notification(KIND.SubscriptionWentActive, "sub_ada")
    forged = {**form, "bt_signature": webhook_signature(form["bt_payload"], PUBLIC_KEY, "someone_elses_private")}
    assert "signature does not match" in str(refused(forged))
    other = BraintreeStandIn(public_key="other_public", private_key="other_private")
    other.add_customer("c1")
    other.add_subscription("c1", subscription_id="sub_other")
    assert "no matching public key" in str(refused(other.sample_notification(KIND.SubscriptionCanceled, "sub_other")))


def test_rotation_any_configured_key_pair_verifies(standin):
    rotated = BraintreeStandIn(public_key="new_public", private_key="new_private_0000")
    rotated.add_customer("c1")
    rotated.add_subscription("c1", subscription_id="sub_new")
    form = rotated.sample_notification(KIND.SubscriptionChargedSuccessfully, "sub_new")
    keys = [(PUBLIC_KEY, PRIVATE_KEY), ("new_public", "new_private_0000")]
    assert parse_form(form, keys)["subscription"]["id"] == "sub_new"
    assert "no matching public key" in str(refused(form, keys=KEYS))


def test_a_signature_with_one_pair_per_merchant_key_verifies_with_ours(standin):
    form = standin.sample_notification(KIND.SubscriptionCanceled, "sub_ada")
    several = f"old_public|{'0' * 40}&{form['bt_signature']}"
    assert parse_form({**form, "bt_signature": several}, KEYS)["kind"] == "subscription_canceled"


def test_old_and_future_timestamps_are_accepted_and_resends_share_one_dedupe_id(standin):
    # Braintree documents no tolerance and resends for up to 24 h: age is not a reason to refuse;
    # the signature covers the timestamp and the inbox's unique event id drops the resends.
    for when in (datetime.now(UTC) - timedelta(days=2), datetime.now(UTC) + timedelta(hours=1)):
        form = standin.sample_notification(KIND.SubscriptionWentPastDue, "sub_ada", when)
        assert parse_form(form, KEYS)["event_id"] == parse_form(dict(form), KEYS)["event_id"]


def test_a_new_charge_in_the_same_second_is_a_new_event(standin):
    when = datetime(2026, 5, 18, 9, 30, tzinfo=UTC)
    first = parse_form(standin.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada", when), KEYS)
    standin.fail_charge("sub_ada")
    second = parse_form(standin.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada", when), KEYS)
    assert first["event_id"] != second["event_id"]


def test_dedupe_id_without_subject_or_transactions():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert dedupe_id({"kind": "check", "timestamp": when, "subject_id": None}) == "check:2026-01-02T03:04:05Z:-"
    parsed = {
        "kind": "subscription_canceled",
        "timestamp": when,
        "subject_id": "s1",
        "subscription": {"transactions": []},
    }
    assert dedupe_id(parsed) == "subscription_canceled:2026-01-02T03:04:05Z:s1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bt_signature": None}, "missing"),
        ({"bt_payload": ""}, "missing"),
        ({"bt_payload": "PG5vdGlmaWNhdGlvbj4=é"}, "not ASCII"),
        ({"bt_signature": f"{PUBLIC_KEY}|abc|def"}, "malformed"),
        ({"bt_payload": "not base64 <xml>"}, "illegal characters"),
        ({"bt_signature": "no pairs at all"}, "no matching public key"),
        ({"bt_payload": "A" * 1_000_001}, "too large"),
    ],
)
def test_malformed_forms_are_refused_cleanly(standin, change, reason):
    form = {**standin.sample_notification(KIND.SubscriptionWentActive, "sub_ada"), **change}
    assert reason in str(refused(form))


def test_signed_but_unreadable_payload_is_a_400_not_a_crash():
    payload = base64.encodebytes(b"<notification><kind>").decode()
    form = {"bt_payload": payload, "bt_signature": webhook_signature(payload, PUBLIC_KEY, PRIVATE_KEY)}
    error = refused(form)
    assert "not a readable" in str(error)
    assert error.status == 400


def test_signed_notification_with_a_malformed_amount_is_refused():
    xml = (
        '<notification><timestamp type="datetime">2026-05-18T09:30:00Z</timestamp>'
        "<kind>subscription_went_past_due</kind><subject><subscription><id>s1</id><balance>12.345</balance>"
        '<transactions type="array"><transaction><id>t1</id><amount>12.345</amount>'
        "<currency-iso-code>USD</currency-iso-code></transaction></transactions></subscription></subject></notification>"
    )
    payload = base64.encodebytes(xml.encode()).decode()
    form = {"bt_payload": payload, "bt_signature": webhook_signature(payload, PUBLIC_KEY, PRIVATE_KEY)}
    assert "more decimal places" in str(refused(form))


def test_no_configured_keys_refuses():
    assert "no Braintree keys" in str(refused({"bt_signature": "a|b", "bt_payload": "YQ=="}, keys=[]))
