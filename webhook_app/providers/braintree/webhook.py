"""Braintree webhooks: verify and read the `bt_signature` / `bt_payload` form fields through the SDK,
and derive the dedupe id Braintree does not give us.

https://developer.paypal.com/braintree/docs/guides/webhooks/parse/python
- POST application/x-www-form-urlencoded, `bt_payload` = base64 XML `<notification><timestamp/><kind/>
  <subject>…</subject></notification>`, `bt_signature` = `public_key|hex` pairs joined by `&`, hex =
  HMAC-SHA1 keyed with SHA1(private_key) over the payload (braintree/webhook_notification_gateway.py).
  Each of the merchant's API keys gets a pair, so the SDK picks the pair for its own public key.
- Notifications carry **no event id** and Braintree resends for hours when we do not answer 2xx: the
  dedupe key is `kind:timestamp:subject id`, plus the newest transaction id when the subject has
  transactions (two charges of one subscription in one second are two events; a resend is the same).
- No timestamp tolerance is applied: Braintree documents none and resends for up to 24 h (production);
  the signature still covers the timestamp, and the inbox's unique key drops replays.

Several key sets may be configured (a key rotation on our side): the delivery is accepted when any
one of them verifies it. Every refusal is a WebhookRejected (400, as for a bad Stripe signature: there is
no HTTP authentication to challenge) whose reason carries no key or payload.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import braintree
from braintree.exceptions import InvalidSignatureError

from webhook_app.errors import BadPayload, WebhookRejected
from webhook_app.providers.braintree.objects import subscription_dict

_MAX_PAYLOAD = 1_000_000
_SUBJECTS = ("subscription", "transaction", "dispute", "disbursement", "merchant_account")


@functools.lru_cache(maxsize=8)
def gateway_for(public_key: str, private_key: str) -> braintree.BraintreeGateway:
    """A gateway that can only verify webhooks (parsing needs the keys, not the merchant or host)."""
    return braintree.BraintreeGateway(
        braintree.Configuration(
            environment=braintree.Environment.Sandbox,
            merchant_id="webhook-verification-only",
            public_key=public_key,
            private_key=private_key,
        )
    )


def _check_form(bt_signature: object, bt_payload: object) -> tuple[str, str]:
    if isinstance(bt_payload, bytes):  # the SDK's own test helper hands out bytes
        try:
            bt_payload = bt_payload.decode("ascii")
        except UnicodeDecodeError:
            raise WebhookRejected("bt_payload or bt_signature is not ASCII") from None
    if not isinstance(bt_signature, str) or not isinstance(bt_payload, str) or not bt_signature or not bt_payload:
        raise WebhookRejected("missing bt_signature or bt_payload form field")
    if len(bt_payload) > _MAX_PAYLOAD or len(bt_signature) > 10_000:
        raise WebhookRejected("bt_payload or bt_signature is too large")
    if not bt_payload.isascii() or not bt_signature.isascii():
        # The SDK encodes the payload as ASCII and would raise UnicodeEncodeError: refuse cleanly first.
        raise WebhookRejected("bt_payload or bt_signature is not ASCII")
    if any(pair.count("|") != 1 for pair in bt_signature.split("&") if "|" in pair):
        # The SDK unpacks each `public|signature` pair in two: a third field would be a ValueError.
        raise WebhookRejected("bt_signature is malformed")
    return bt_signature, bt_payload


def _subject(notification: Any) -> tuple[str | None, Any]:
    for name in _SUBJECTS:
        subject = getattr(notification, name, None)
        if subject is not None:
            return name, subject
    return None, None


def parse_notification(
    gateways: Sequence[braintree.BraintreeGateway], bt_signature: object, bt_payload: object
) -> dict[str, Any]:
    """Verify the delivery with the first gateway whose keys match, then read it.

    Returns {event_id (the dedupe id), kind, timestamp (aware datetime), subject_type, subject_id,
    subscription (a plain dict, or None when the subject is not a subscription)}.
    """
    signature, payload = _check_form(bt_signature, bt_payload)
    if not gateways:
        raise WebhookRejected("no Braintree keys are configured (BRAINTREE_PUBLIC_KEY / BRAINTREE_PRIVATE_KEY)", 401)
    notification = None
    reason = "no matching public key"
    for gateway in gateways:
        try:
            notification = gateway.webhook_notification.parse(signature, payload)
            break
        except InvalidSignatureError as exc:
            # The SDK's reasons are fixed texts ("no matching public key", "signature does not match
            # payload - one has been modified", "payload contains illegal characters").
            reason = str(exc) or reason
        except Exception:  # signed with our key but unreadable XML: still a 400, never a 500
            raise WebhookRejected("bt_payload is not a readable Braintree notification") from None
    if notification is None:
        raise WebhookRejected(f"Braintree signature rejected: {reason}")
    kind = getattr(notification, "kind", None)
    timestamp = getattr(notification, "timestamp", None)
    if not isinstance(kind, str) or not kind or not kind.isascii() or len(kind) > 100:
        raise WebhookRejected("Braintree notification has no kind")
    if not isinstance(timestamp, datetime):
        raise WebhookRejected("Braintree notification has no timestamp")
    if timestamp.tzinfo is None:  # the SDK parses the Z-suffixed time as naive UTC
        timestamp = timestamp.replace(tzinfo=UTC)
    subject_type, subject = _subject(notification)
    subject_id = getattr(subject, "id", None) if subject is not None else None
    subscription = None
    if subject_type == "subscription":
        try:
            subscription = subscription_dict(subject)
        except BadPayload as exc:
            raise WebhookRejected(f"Braintree notification subscription is malformed: {exc}") from None
    parsed = {
        "kind": kind,
        "timestamp": timestamp,
        "subject_type": subject_type,
        "subject_id": subject_id if isinstance(subject_id, str) else None,
        "subscription": subscription,
    }
    parsed["event_id"] = dedupe_id(parsed)
    return parsed


def dedupe_id(parsed: Mapping[str, Any]) -> str:
    """`kind:timestamp:subject id[:newest transaction id]`, stable across Braintree's resends."""
    stamp = parsed["timestamp"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [parsed["kind"], stamp, parsed.get("subject_id") or "-"]
    subscription = parsed.get("subscription")
    if subscription and subscription.get("transactions"):
        newest = subscription["transactions"][0].get("id")
        if newest:
            parts.append(newest)
    return ":".join(parts)


def parse_form(form: Mapping[str, str], keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Verify and read a delivery's form fields with any of the configured (public, private) key pairs."""
    gateways = [gateway_for(public, private) for public, private in keys if public and private]
    return parse_notification(gateways, form.get("bt_signature"), form.get("bt_payload"))
