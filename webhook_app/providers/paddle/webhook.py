"""Paddle Billing webhooks: verify the `Paddle-Signature` header, then read the event envelope.

Pure functions (no Flask, no network): the intake view passes the raw body and the header.
- Signature: https://developer.paddle.com/webhooks/signature-verification
  `Paddle-Signature: ts=<unix seconds>;h1=<hex>`, h1 = HMAC-SHA256(secret, f"{ts}:{raw body}"). While a
  notification destination's secret is being rotated a header may carry several `h1=` values.
- Envelope: https://developer.paddle.com/webhooks/overview
  `{event_id: "evt_…", event_type, occurred_at, notification_id: "ntf_…", data: {…}}`. `event_id` is the
  dedupe key: `notification_id` differs per destination (and per replay) for the same event.

Why not the SDK's `paddle_billing.Notifications.Verifier` (paddle-python-sdk 1.16.1, read in its source):
- its tolerance defaults to 5 s, both ways; we use the Stripe-like 300 s, since Paddle retries deliveries
  and our ack path can queue behind a slow database for longer than 5 s;
- the environment variable `TEST_MODE=1` silently turns its timestamp check off: a knob outside
  config.py that would disable replay protection in production if it leaked into the environment;
- it wants a request object and decodes the body as UTF-8 (a non-UTF-8 body raises UnicodeDecodeError),
  and `PaddleSignature.parse` raises a bare ValueError on an unknown key, a value containing "=" or a
  non-numeric ts, and `hmac.compare_digest` raises TypeError on a non-ASCII `h1`: each would be a 500
  (so Paddle retries a forged request for 3 days) instead of a clean 400;
- with one secret it returns False, with a list it raises ConnectionRefusedError: two failure shapes.
The HMAC itself is ten lines; tests check our signatures against the SDK's `PaddleSignature.verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import datetime
from typing import Any

from webhook_app.errors import WebhookRejected

HEADER = "Paddle-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_MAX_HEADER = 2048  # a header with a handful of 64-hex signatures is ~300 characters
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"[0-9]{1,12}")
_EVENT_ID = re.compile(r"evt_[0-9a-z]{1,64}")
_NOTIFICATION_ID = re.compile(r"ntf_[0-9a-z]{1,64}")
_EVENT_TYPE = re.compile(r"[a-z][a-z_]*(\.[a-z_]+)+")


def sign(body: bytes, secret: str, ts: int) -> str:
    """The h1 hex digest Paddle computes for `body` at `ts` with one endpoint secret."""
    return hmac.new(secret.encode("utf-8"), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()


def _parse_header(header: str) -> tuple[int, list[str]]:
    ts: int | None = None
    signatures: list[str] = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookRejected(f"{HEADER} header is malformed (expected ts=…;h1=…)")
        if key == "ts":
            if ts is not None or not _TS.fullmatch(value):
                raise WebhookRejected(f"{HEADER} header has a malformed timestamp")
            ts = int(value)
        elif key == "h1":
            signatures.append(value.lower())
        # Other keys (a future h2 scheme) are ignored, not refused: the h1 check still decides.
    if ts is None:
        raise WebhookRejected(f"{HEADER} header has no timestamp (ts=)")
    if not signatures:
        raise WebhookRejected(f"{HEADER} header has no h1 signature")
    return ts, signatures


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: tuple[str, ...],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Accept `body` if any of `secrets` produced any `h1=` in `header` within the tolerance, else raise.

    The signature is checked before the time, so "too old" and "in the future" describe genuine deliveries
    (a replay, a delayed retry, a skewed clock) and a forgery is always "no valid signature".
    """
    if not secrets:
        raise WebhookRejected("no Paddle webhook secret is configured (PADDLE_WEBHOOK_SECRET)", status=401)
    if not header:
        raise WebhookRejected(f"missing {HEADER} header")
    if len(header) > _MAX_HEADER or not header.isascii() or not header.isprintable():
        raise WebhookRejected(f"{HEADER} header is malformed (not printable ASCII or too long)")
    ts, signatures = _parse_header(header)
    candidates = [s for s in signatures if _HEX64.fullmatch(s)]
    matched = any(
        hmac.compare_digest(sign(body, secret, ts), candidate)
        for secret in secrets
        if secret
        for candidate in candidates
    )
    if not matched:
        raise WebhookRejected("no valid signature for any configured Paddle webhook secret")
    current = time.time() if now is None else now
    if current - ts > tolerance_seconds:
        raise WebhookRejected(
            f"signature timestamp is too old ({int(current - ts)}s > {tolerance_seconds}s: replayed or delayed)"
        )
    if ts - current > tolerance_seconds:
        raise WebhookRejected(f"signature timestamp is in the future ({int(ts - current)}s ahead: check clocks)")


def _plain(value: str, limit: int = 255) -> bool:
    # Printable ASCII only: a NUL or a lone surrogate would fail in the database instead of here.
    return 0 < len(value) <= limit and value.isascii() and value.isprintable()


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The envelope of a verified delivery: event_id, event_type, occurred_at, notification_id, data.

    Raises WebhookRejected naming the field that is missing or malformed (never echoing its value).
    """
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    event_id = event.get("event_id")
    if not (isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id)):
        raise WebhookRejected("event field 'event_id' is missing or malformed (expected evt_…)")
    event_type = event.get("event_type")
    if not (isinstance(event_type, str) and _plain(event_type, 100) and _EVENT_TYPE.fullmatch(event_type)):
        raise WebhookRejected("event field 'event_type' is missing or malformed")
    occurred_at = event.get("occurred_at")
    if not (isinstance(occurred_at, str) and _plain(occurred_at, 64)):
        raise WebhookRejected("event field 'occurred_at' is missing or malformed")
    try:
        occurred = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected("event field 'occurred_at' is not an RFC 3339 time") from None
    if occurred.tzinfo is None:
        raise WebhookRejected("event field 'occurred_at' has no time zone")
    data = event.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected("event field 'data' is missing or not an object")
    notification_id = event.get("notification_id")
    if notification_id is not None and not (
        isinstance(notification_id, str) and _NOTIFICATION_ID.fullmatch(notification_id)
    ):
        raise WebhookRejected("event field 'notification_id' is malformed (expected ntf_…)")
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": occurred,
        "notification_id": notification_id,
        "data": data,
    }
