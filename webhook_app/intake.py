"""`POST /webhooks/stripe`: verify, store in the inbox, answer. Nothing slow happens here.

Stripe retries for days when we do not answer 2xx and gives up on endpoints that time out, so this
path only checks the signature over the raw body and inserts one row (unique on the event id: a
duplicate delivery is a success that stores nothing new). The worker does the rest.
https://docs.stripe.com/webhooks#verify-events
"""

from __future__ import annotations

import json
import logging
import time

import stripe
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from webhook_app import inbox
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("intake", __name__)


class Rejected(Exception):
    """A delivery we refuse with 400; the reason is safe to show (no secrets, no payload)."""


def _error(status: int, code: str, message: str, **extra):
    return jsonify({"error": code, "message": message, **extra}), status


def verify_signature(body: bytes, header: str | None, secrets: tuple[str, ...], tolerance: int) -> None:
    """Accept the body if any configured secret signed it recently; raise `Rejected` otherwise."""
    if not header:
        raise Rejected("missing Stripe-Signature header")
    if not header.isascii():
        # The stripe library compares signatures with hmac.compare_digest, which raises TypeError on
        # non-ASCII text: an unsigned request must get its 400, not a 500.
        raise Rejected("Stripe-Signature header is not ASCII")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("body is not UTF-8") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            if "tolerance" in str(exc):
                raise Rejected("signature timestamp is too old (replayed or delayed delivery)") from None
            continue
        # The library only rejects old timestamps; a timestamp far in the future is as suspect.
        timestamp = _timestamp(header)
        if timestamp is not None and timestamp > time.time() + tolerance:
            raise Rejected("signature timestamp is in the future")
        return
    raise Rejected("no valid signature for any configured webhook secret")


def _timestamp(header: str) -> int | None:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def parse_event(body: bytes) -> dict:
    """The envelope fields the inbox needs, checked for type; raises `Rejected` when malformed."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise Rejected("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise Rejected("body is not a JSON object")
    checks = {
        "id": lambda v: isinstance(v, str) and v.startswith("evt_") and len(v) <= 255 and _plain(v),
        "type": lambda v: isinstance(v, str) and 0 < len(v) <= 100 and _plain(v),
        "created": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32,
        "livemode": lambda v: isinstance(v, bool),
        "data": lambda v: isinstance(v, dict) and isinstance(v.get("object"), dict),
    }
    for field, ok in checks.items():
        if not ok(event.get(field)):
            raise Rejected(f"event field {field!r} is missing or malformed")
    api_version = event.get("api_version")
    if api_version is not None and not (
        isinstance(api_version, str) and len(api_version) <= 40 and _plain(api_version)
    ):
        raise Rejected("event field 'api_version' is malformed")
    return event


def _plain(value: str) -> bool:
    """Stripe's ids, types and versions are printable ASCII. A NUL (PostgreSQL refuses it: a 503 on every
    retry) or a lone surrogate (no database can encode it: a 500) must be refused as malformed instead."""
    return value.isascii() and value.isprintable()


@bp.post("/webhooks/stripe")
def receive():
    """Verify a Stripe delivery and store it in the inbox; 200 once stored (or already stored)."""
    svc = services()
    settings = svc.settings
    missing = settings.missing_for_intake()
    if missing:
        log.error("webhook received but not configured: missing %s", ", ".join(missing))
        return _error(503, "not_configured", f"set {', '.join(missing)} to accept webhooks", missing=missing)
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return _error(413, "payload_too_large", f"body exceeds {settings.max_body_bytes} bytes")
    body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH for chunked bodies
    try:
        verify_signature(
            body,
            request.headers.get("Stripe-Signature"),
            settings.stripe_webhook_secrets,
            settings.webhook_tolerance_seconds,
        )
        event = parse_event(body)
    except Rejected as exc:
        log.warning("webhook rejected: %s", exc)
        return _error(400, "invalid_delivery", str(exc))

    expected_mode = settings.stripe_livemode
    mode_mismatch = expected_mode is not None and event["livemode"] != expected_mode
    try:
        stored = inbox.store(
            svc.db,
            event,
            body.decode("utf-8"),
            svc.clock.now(),
            ignored_reason="livemode does not match STRIPE_SECRET_KEY" if mode_mismatch else None,
        )
    except SQLAlchemyError:
        # Never 200 without a stored row: Stripe will retry and nothing is lost.
        log.exception(
            "inbox unavailable; answering 503 so Stripe retries",
            extra={"event_id": event["id"], "event_type": event["type"]},
        )
        return _error(503, "storage_unavailable", "could not store the event; retry later")
    context = {"event_id": event["id"], "event_type": event["type"]}
    if mode_mismatch:
        log.warning(
            "event stored as ignored: livemode=%s but the key is %s mode",
            event["livemode"],
            "live" if expected_mode else "test",
            extra=context,
        )
    elif stored:
        log.info("event stored", extra=context)
        svc.wake_worker()
    else:
        log.info("duplicate delivery acknowledged", extra=context)
    return jsonify({"received": True, "duplicate": not stored}), 200


@bp.errorhandler(413)
def too_large(_exc):
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return _error(413, "payload_too_large", f"body exceeds {limit} bytes")
