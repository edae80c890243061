"""Chargebee webhook verification: HTTP basic auth, then the event envelope. Pure functions, no Flask.

Chargebee signs nothing: a webhook endpoint is protected by the basic-auth username and password set
on it in Chargebee's webhook settings, optionally with an IP allowlist.
The body is the Event resource (`GET /api/v2/events/{id}` answers the same object):
https://apidocs.chargebee.com/docs/api/events
`{id, occurred_at, source, user?, object: "event", api_version: "v2", event_type, webhook_status,
content: {invoice: {...}, customer: {...}, ...}}`. Chargebee retries a delivery that does not get a
2xx, so deliveries repeat: the inbox deduplicates on `id`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from webhook_app.errors import WebhookRejected

# Longer than any sane `Basic base64(user:password)`; refusing early keeps a hostile header cheap.
_AUTHORIZATION_MAX = 4096
# Event ids are `ev_...` (test sites: `ev___test__...`); printable ASCII without spaces, as stored.
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,255}")
_EVENT_TYPE = re.compile(r"[a-z0-9_]{1,100}")
_SUPPORTED_API_VERSION = "v2"


def check_basic_auth(authorization_header: str | None, username: str, password: str) -> None:
    """Accept the delivery only if its `Authorization: Basic` credentials are `username` and `password`.

    Raises WebhookRejected (401) otherwise. Both parts are compared in constant time and both
    comparisons always run, so neither the timing nor the reason tells which part was wrong.
    """
    if not username or not password:
        # Fail closed: an endpoint without configured credentials would accept anyone's events.
        raise WebhookRejected("Chargebee webhook credentials are not configured on this service", status=401)
    if not authorization_header:
        raise WebhookRejected("missing Authorization header (Chargebee webhook basic auth)", status=401)
    if len(authorization_header) > _AUTHORIZATION_MAX or not authorization_header.isascii():
        raise WebhookRejected("malformed Authorization header", status=401)
    scheme, _, encoded = authorization_header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebhookRejected("Authorization header is not HTTP Basic", status=401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("malformed Authorization header", status=401) from None
    given_user, colon, given_password = decoded.partition(b":")
    if not colon:
        raise WebhookRejected("malformed Authorization header", status=401)
    # Bytes, not str: hmac.compare_digest refuses non-ASCII str, and a password may be UTF-8.
    user_ok = hmac.compare_digest(given_user, username.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    if not (user_ok & password_ok):  # `&`, not `and`: no short circuit
        raise WebhookRejected("wrong webhook credentials", status=401)


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The Chargebee event as a dict, its envelope checked; raises WebhookRejected (400) when malformed.

    The reason names the field, never its value: rejected payloads are untrusted and may carry PII.
    """
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; deep nesting recurses
        raise WebhookRejected("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    event_id = event.get("id")
    if not (isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id)):
        raise WebhookRejected("event field 'id' is missing or malformed")
    event_type = event.get("event_type")
    if not (isinstance(event_type, str) and _EVENT_TYPE.fullmatch(event_type)):
        raise WebhookRejected("event field 'event_type' is missing or malformed")
    occurred_at = event.get("occurred_at")
    if not (isinstance(occurred_at, int) and not isinstance(occurred_at, bool) and 0 < occurred_at < 2**40):
        raise WebhookRejected("event field 'occurred_at' is missing or not a Unix timestamp")
    api_version = event.get("api_version")
    if api_version != _SUPPORTED_API_VERSION:
        # A v1 webhook carries v1-shaped resources (amounts and fields differ); set the webhook to v2.
        raise WebhookRejected("event field 'api_version' must be 'v2' (set the Chargebee webhook's API version to v2)")
    if not isinstance(event.get("content"), dict):
        raise WebhookRejected("event field 'content' is missing or not an object")
    kind = event.get("object")
    if kind is not None and kind != "event":
        raise WebhookRejected("event field 'object' must be 'event'")
    return event
