"""Recurly webhook verification: the `recurly-signature` header, then the JSON envelope. No Flask.

JSON webhook endpoints are signed (XML ones are not, so only JSON endpoints are supported):
`recurly-signature: <unix milliseconds>,<hex HMAC-SHA256>[,<hex>...]`, the HMAC keyed with the
endpoint's secret over `f"{timestamp}.{raw body}"`. Several signatures appear while a secret is being
rotated; any may match. Recurly's own verifier (recurly-client-ruby `Recurly::Webhooks.verify_signature`)
allows 5 minutes of drift either way:
https://github.com/recurly/recurly-client-ruby/blob/master/lib/recurly/webhooks.rb (the Python SDK has none).

JSON payloads are thin: `{id, object_type, site_id, event_type, event_time, <identifier>}` where the
identifier depends on the object (`account_code` for accounts, `invoice_number` for invoices and
dunning events, `uuid` for others); fetch the object through the API before acting.
https://docs.recurly.com/recurly-subscriptions/docs/charge-invoice-notifications,
https://docs.recurly.com/recurly-subscriptions/docs/account-notifications,
https://docs.recurly.com/recurly-subscriptions/docs/dunning-events-notifications
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

_HEADER_MAX = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,16}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_NOTIFICATION_ID = re.compile(r"[\x21-\x7e]{1,255}")
_NAME = re.compile(r"[a-z0-9_]{1,100}")


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: tuple[str, ...],
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> None:
    """Accept `body` if any configured secret produced any signature in `header` within the tolerance.

    Raises WebhookRejected (400) with a reason safe to log: missing or malformed header, a stale or a
    future timestamp (distinct reasons), or no matching signature. `now` is Unix seconds (tests).
    """
    if not header:
        raise WebhookRejected("missing recurly-signature header")
    if len(header) > _HEADER_MAX:
        raise WebhookRejected("recurly-signature header is too long")
    if not header.isascii():
        raise WebhookRejected("recurly-signature header is not ASCII")
    timestamp, *candidates = (part.strip() for part in header.split(","))
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookRejected("recurly-signature header has no valid millisecond timestamp")
    signatures = [s.lower() for s in candidates if _SIGNATURE.fullmatch(s)]
    if not signatures:
        raise WebhookRejected("recurly-signature header carries no signature")
    keys = [secret for secret in secrets if secret]
    if not keys:
        raise WebhookRejected("no Recurly webhook secret is configured")
    now_ms = (time.time() if now is None else now) * 1000
    drift_ms = int(timestamp) - now_ms
    if drift_ms < -tolerance_seconds * 1000:
        raise WebhookRejected("signature timestamp is too old (replayed or delayed delivery)")
    if drift_ms > tolerance_seconds * 1000:
        raise WebhookRejected("signature timestamp is in the future")
    # The raw bytes as received, never a re-serialization: any byte changed breaks the HMAC.
    signed = timestamp.encode("ascii") + b"." + body
    matched = False
    for key in keys:
        expected = hmac.new(key.encode("utf-8"), signed, hashlib.sha256).hexdigest()
        for signature in signatures:
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise WebhookRejected("no valid signature for any configured webhook secret")


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The notification as a dict, envelope checked; raises WebhookRejected (400) naming the bad field.

    Dedupe on `id` (the notification id). Identifier fields are type-checked when present; the event
    name the docs use is `f"{object_type}.{event_type}"` (e.g. `charge_invoice.past_due`).
    """
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    notification_id = event.get("id")
    if not (isinstance(notification_id, str) and _NOTIFICATION_ID.fullmatch(notification_id)):
        raise WebhookRejected("notification field 'id' is missing or malformed")
    for field in ("object_type", "event_type"):
        value = event.get(field)
        if not (isinstance(value, str) and _NAME.fullmatch(value)):
            raise WebhookRejected(f"notification field {field!r} is missing or malformed")
    if not _is_timestamp(event.get("event_time")):
        raise WebhookRejected("notification field 'event_time' is missing or not an ISO-8601 time")
    for field in ("site_id", "uuid", "account_code"):
        if field in event and not _is_identifier(event[field]):
            raise WebhookRejected(f"notification field {field!r} is malformed")
    number = event.get("invoice_number")
    if number is not None and not _is_invoice_number(number):
        raise WebhookRejected("notification field 'invoice_number' is malformed")
    return event


def _is_timestamp(value: object) -> bool:
    if not (isinstance(value, str) and 0 < len(value) <= 40 and value.isascii()):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _is_identifier(value: object) -> bool:
    # Printable and storable: no NUL (PostgreSQL refuses it), no lone surrogate (no database encodes it).
    return isinstance(value, str) and 0 < len(value) <= 255 and value.isprintable() and _encodable(value)


def _is_invoice_number(value: object) -> bool:
    # The docs show a JSON integer (`"invoice_number": 1000`); a site with an invoice number prefix
    # may send text, so a short printable string is accepted too.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 < value < 2**63
    return isinstance(value, str) and len(value) <= 100 and _is_identifier(value)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
