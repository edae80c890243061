"""`POST /webhooks/<provider>`: verify, store in the inbox, answer. Nothing slow happens here.

Billing systems retry for days when we do not answer 2xx and give up on endpoints that time out, so
this path only verifies the delivery (the provider's signature over the raw body, or basic auth) and
inserts one row, unique on (provider, event id): a duplicate delivery is a success that stores nothing
new. No billing-system or email-tool API is called here; the worker does the rest.

It is served in front of Flask (`Intake` wraps the app's WSGI callable): an acknowledgement needs
none of Flask's request machinery (request and app contexts, the session, URL matching, response
objects), which cost as much CPU per delivery as storing it (docs/performance.md). Every other path
goes on to Flask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from webhook_app import inbox
from webhook_app.errors import WebhookRejected

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from webhook_app.services import Services

log = logging.getLogger(__name__)

PREFIX = "/webhooks/"
READ_CHUNK = 65536


@dataclass(frozen=True)
class Answer:
    """One answer to a delivery: HTTP status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, code: str, message: str, *headers: tuple[str, str], **extra: object) -> Answer:
    # Encoded as Flask's jsonify does (sorted keys, compact, a final newline), like every other JSON answer.
    payload = {"error": code, "message": message, **extra}
    return Answer(status, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode() + b"\n", headers)


# The two answers to a stored delivery, encoded once: every acknowledgement sends one of them.
STORED = Answer(200, b'{"duplicate":false,"received":true}\n')
DUPLICATE = Answer(200, b'{"duplicate":true,"received":true}\n')
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class Headers(Mapping[str, str]):
    """A request's headers, read from the WSGI environ by name in any case (RFC 9110), without a copy."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        key = name.upper().replace("-", "_")
        value = self._environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key]
        if not isinstance(value, str):
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Intake:
    """The WSGI layer in front of the Flask app that answers `/webhooks/<provider>` itself."""

    def __init__(self, app: WSGIApplication, svc: Services) -> None:
        self.app = app
        self.svc = svc

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a webhook delivery, or pass the request on to the app."""
        path: str = environ.get("PATH_INFO", "")
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        if not name or "/" in name or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)  # Flask: pages, 404s, and 405 for a GET here
        try:
            answer = receive(self.svc, name, environ)
        except Exception:  # as Flask would: logged (and so sent to Sentry), answered 500, retried
            log.exception("webhook intake failed on %s", path)
            answer = _error(500, "internal_error", "the delivery could not be handled; retry later")
        start_response(
            _STATUS_LINES[answer.status],
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer.body))),
                ("X-Content-Type-Options", "nosniff"),
                *answer.headers,
            ],
        )
        return [answer.body]


def flask_view(name: str) -> tuple[bytes, int, list[tuple[str, str]]]:
    """The same answer as a Flask view. `Intake` answers every POST before Flask routes it; the rule
    is there so that Flask answers other methods on these paths with its 405."""
    from flask import request

    from webhook_app.services import services

    answer = receive(services(), name, request.environ)
    return answer.body, answer.status, [("Content-Type", "application/json"), *answer.headers]


def receive(svc: Services, name: str, environ: Mapping[str, Any]) -> Answer:
    """Verify a delivery and store it in the inbox; 200 once stored (or already stored)."""
    provider = svc.providers.get(name)
    if provider is None:
        return _error(404, "unknown_provider", f"no billing provider called {name!r}")
    missing = provider.missing_for_intake()
    if missing:
        log.error("%s webhook received but not configured: missing %s", provider.label, ", ".join(missing))
        return _error(503, "not_configured", f"set {', '.join(missing)} to accept webhooks", missing=missing)
    limit = svc.settings.max_body_bytes
    length = _content_length(environ)
    if length is not None and length > limit:
        log.warning(
            "%s webhook refused (413): body of %d bytes exceeds WEBHOOK_MAX_BODY_BYTES (%d)",
            provider.label,
            length,
            limit,
        )
        return _error(413, "payload_too_large", f"body exceeds {limit} bytes")
    body = _body(environ, length, limit)
    if body is None:
        # A chunked body has no Content-Length to refuse it by: it is read up to the limit, no further.
        log.warning(
            "%s webhook refused (413): a chunked body exceeds WEBHOOK_MAX_BODY_BYTES (%d)", provider.label, limit
        )
        return _error(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        event = provider.receive(Headers(environ), body)
    except WebhookRejected as exc:
        log.warning("%s webhook rejected: %s", provider.label, exc)
        if exc.status == 401:
            return _error(401, "unauthorized", str(exc), ("WWW-Authenticate", f'Basic realm="webhooks/{name}"'))
        return _error(exc.status, "invalid_delivery", str(exc))

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
        # DEBUG, not INFO: a line per delivery cost a tenth of the acknowledgement's CPU under load, and
        # the row itself records the arrival (received_at); the worker logs each event it handles.
        log.debug("event stored", extra=context)
        svc.wake_worker()
    else:
        log.info("duplicate delivery acknowledged", extra=context)
    return STORED if stored else DUPLICATE


def _content_length(environ: Mapping[str, Any]) -> int | None:
    """CONTENT_LENGTH as a number; None when absent or not a number (read as no body, as Werkzeug does)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _body(environ: Mapping[str, Any], length: int | None, limit: int) -> bytes | None:
    """The request body; None when a body without a Content-Length (chunked) runs past `limit`."""
    stream = environ["wsgi.input"]
    if length is None:
        if not environ.get("wsgi.input_terminated"):
            return b""  # no length and a stream that may not end: WSGI says read nothing
        length, chunked = limit + 1, True
    else:
        chunked = False
    parts, left = [], length
    while left > 0:
        part = stream.read(min(left, READ_CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    body = b"".join(parts)
    return None if chunked and len(body) > limit else body
