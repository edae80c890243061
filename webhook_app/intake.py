"""`POST /webhooks/<provider>`: verify, store in the inbox, answer. Nothing slow happens here.

Billing systems retry for days when we do not answer 2xx and give up on endpoints that time out, so
this path only verifies the delivery (the provider's signature over the raw body, or basic auth) and
inserts one row, unique on (provider, event id): a duplicate delivery is a success that stores nothing
new. No billing-system or email-tool API is called here; the worker does the rest.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from requests.structures import CaseInsensitiveDict
from sqlalchemy.exc import SQLAlchemyError

from webhook_app import inbox, providers
from webhook_app.errors import WebhookRejected
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("intake", __name__)


def _error(status: int, code: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message, **extra}), status


# The two answers to a stored delivery, encoded once: every acknowledgement sends one of them.
_STORED = b'{"duplicate":false,"received":true}\n'
_DUPLICATE = b'{"duplicate":true,"received":true}\n'


def receive(name: str) -> tuple[Response, int]:
    """Verify a delivery and store it in the inbox; 200 once stored (or already stored)."""
    svc = services()
    provider = svc.providers.get(name)
    if provider is None:
        return _error(404, "unknown_provider", f"no billing provider called {name!r}")
    settings = svc.settings
    missing = provider.missing_for_intake()
    if missing:
        log.error("%s webhook received but not configured: missing %s", provider.label, ", ".join(missing))
        return _error(503, "not_configured", f"set {', '.join(missing)} to accept webhooks", missing=missing)
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        log.warning(
            "%s webhook refused (413): body of %d bytes exceeds WEBHOOK_MAX_BODY_BYTES (%d)",
            provider.label,
            request.content_length,
            settings.max_body_bytes,
        )
        return _error(413, "payload_too_large", f"body exceeds {settings.max_body_bytes} bytes")
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= settings.max_body_bytes:
        # A chunked body has no Content-Length: Werkzeug stops reading at MAX_CONTENT_LENGTH and hands
        # over the truncated part without an error, which would then fail its signature check (400).
        log.warning(
            "%s webhook refused (413): a chunked body reached WEBHOOK_MAX_BODY_BYTES (%d)",
            provider.label,
            settings.max_body_bytes,
        )
        return _error(413, "payload_too_large", f"body exceeds {settings.max_body_bytes} bytes")
    try:
        # Header names are case-insensitive (RFC 9110): providers look them up in any case.
        event = provider.receive(CaseInsensitiveDict(request.headers), body)
    except WebhookRejected as exc:
        log.warning("%s webhook rejected: %s", provider.label, exc)
        code = "unauthorized" if exc.status == 401 else "invalid_delivery"
        response, status = _error(exc.status, code, str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = f'Basic realm="webhooks/{name}"'
        return response, status

    context = {"event_id": event.event_id, "event_type": event.type, "provider": name}
    try:
        stored = inbox.store(svc.db, name, event, svc.clock.now())
    except SQLAlchemyError:
        # Never 200 without a stored row: the provider will retry and nothing is lost.
        log.exception("inbox unavailable; answering 503 so the provider retries", extra=context)
        return _error(503, "storage_unavailable", "could not store the event; retry later")
    if event.ignored_reason:
        log.warning("event stored as ignored: %s", event.ignored_reason, extra=context)
    elif stored:
        log.info("event stored", extra=context)
        svc.wake_worker()
    else:
        log.info("duplicate delivery acknowledged", extra=context)
    return Response(_STORED if stored else _DUPLICATE, mimetype="application/json"), 200


# One static rule per known provider (an exact match is a dictionary look-up, where the rule with a
# variable part is matched by Werkzeug's state machine on every delivery), and the variable rule for
# names no provider has (404 naming it).
for _name in providers.names():
    bp.add_url_rule(f"/webhooks/{_name}", f"receive_{_name}", receive, methods=["POST"], defaults={"name": _name})
bp.add_url_rule("/webhooks/<name>", "receive", receive, methods=["POST"])


@bp.errorhandler(413)
def too_large(_exc: Exception) -> tuple[Response, int]:
    """A body past MAX_CONTENT_LENGTH without a Content-Length (chunked): refused, and said so in the log."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    log.warning("webhook refused (413) on %s: a chunked body exceeds WEBHOOK_MAX_BODY_BYTES (%s)", request.path, limit)
    return _error(413, "payload_too_large", f"body exceeds {limit} bytes")
