"""Stripe deliveries: the `Stripe-Signature` check over the raw body, and the envelope.

https://docs.stripe.com/webhooks#verify-events. Every configured secret is tried (rotation), the
SDK's check refuses old timestamps and ours refuses timestamps far in the future as well.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import stripe

from webhook_app import payload
from webhook_app.errors import WebhookRejected


def verify_signature(body: bytes, header: str | None, secrets: tuple[str, ...], tolerance: int) -> None:
    """Accept the body if any configured secret signed it recently; raise `WebhookRejected` otherwise."""
    if not header:
        raise WebhookRejected("missing Stripe-Signature header")
    if not header.isascii():
        # The stripe library compares signatures with hmac.compare_digest, which raises TypeError on
        # non-ASCII text: an unsigned request must get its 400, not a 500.
        raise WebhookRejected("Stripe-Signature header is not ASCII")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("body is not UTF-8") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            if "tolerance" in str(exc):
                raise WebhookRejected("signature timestamp is too old (replayed or delayed delivery)") from None
            continue
        # The library only rejects old timestamps; a timestamp far in the future is as suspect.
        timestamp = _timestamp(header)
        if timestamp is not None and timestamp > time.time() + tolerance:
            raise WebhookRejected("signature timestamp is in the future")
        return
    raise WebhookRejected("no valid signature for any configured webhook secret")


def _timestamp(header: str) -> int | None:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def parse_event(body: bytes) -> dict[str, Any]:
    """The envelope fields the inbox needs, checked for type; raises `WebhookRejected` when malformed."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    checks: dict[str, Callable[[Any], bool]] = {
        "id": lambda v: isinstance(v, str) and v.startswith("evt_") and len(v) <= 255 and payload.plain(v),
        "type": lambda v: isinstance(v, str) and 0 < len(v) <= 100 and payload.plain(v),
        "created": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32,
        "livemode": lambda v: isinstance(v, bool),
        "data": lambda v: isinstance(v, dict) and isinstance(v.get("object"), dict),
    }
    for name, ok in checks.items():
        if not ok(event.get(name)):
            raise WebhookRejected(f"event field {name!r} is missing or malformed")
    api_version = event.get("api_version")
    if api_version is not None and not (
        isinstance(api_version, str) and len(api_version) <= 40 and payload.plain(api_version)
    ):
        raise WebhookRejected("event field 'api_version' is malformed")
    return event
