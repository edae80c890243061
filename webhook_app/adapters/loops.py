"""Loops as the Messenger: a transactional email when `LOOPS_TRANSACTIONAL_ID` is set, else an event.

API pages this wraps (base `LOOPS_API_BASE`, default https://app.loops.so/api):
- Send transactional email, `POST /v1/transactional`:
  https://loops.so/docs/api-reference/send-transactional-email
- Send event, `POST /v1/events/send`: https://loops.so/docs/api-reference/send-event
- Test API key, `GET /v1/api-key`, authentication, rate limits (10 req/s per team, 429) and error
  bodies: https://loops.so/docs/api-reference/intro

Idempotency: both send endpoints take an `Idempotency-Key` header (at most 100 characters) and answer
`409 Conflict` when the key was used in the previous 24 hours. Our key is per notification, so a 409
on a retry means the first attempt reached Loops: it counts as sent (`SendResult.duplicate`).
Error texts from Loops are scrubbed of the API key and the customer's email before they are raised.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import requests

from webhook_app.adapters import Message, SendResult, http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.config import LoopsSettings
from webhook_app.errors import ConfigurationNeeded, MessengerRejected
from webhook_app.observability import scrub

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 100  # Loops rejects longer keys
DEFAULT_RETRY_AFTER = 1.0  # Loops meters per second and documents no Retry-After header


def _retry_after(response: requests.Response) -> float:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return DEFAULT_RETRY_AFTER if retry_after is None else retry_after


_DETAIL_MAX = 300


def loops_idempotency_key(key: str) -> str:
    """`key` itself when Loops accepts its length, else a stable digest of it (same key, same digest)."""
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _variable(value: Any) -> Any:
    # dataVariables values "can be of type string or number" (plus arrays for array blocks), so
    # booleans become "true"/"false" and a missing value the documented empty string.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict):
        return {k: _variable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_variable(v) for v in value]
    return value


def _first(configured: dict[str, str], keys: tuple[str, ...]) -> str | None:
    """The configured value of the first key that has one (`first.insufficient_funds`, then `first`)."""
    return next((configured[key] for key in keys if key in configured), None)


def transactional_variables(message: Message) -> dict[str, Any]:
    """The contract's message data as Loops `dataVariables` (strings, numbers, the invoices array)."""
    return {key: _variable(value) for key, value in message.data_variables().items()}


def event_properties(message: Message) -> dict[str, Any]:
    """The contract's message data as Loops `eventProperties`.

    Event properties may only be strings, numbers, booleans or dates, so the multi-invoice list is left
    out (`invoiceCount` still says how many invoices are unpaid).
    """
    return {key: value for key, value in message.data_variables().items() if isinstance(value, (str, int, float, bool))}


class LoopsMessenger:
    """Sends recovery messages through Loops; every HTTP call first takes a token from `bucket`.

    Event mode identifies the contact by email only: Loops updates a found contact's `userId` with the
    one sent, which would overwrite the company's own user ids with Stripe customer ids.
    """

    name = "loops"

    def __init__(
        self, settings: LoopsSettings, session: requests.Session | None = None, bucket: TokenBucket | None = None
    ):
        self._api_key = settings.api_key
        self._transactional_id = settings.transactional_id
        self._event_name = settings.event_name
        # Per-message overrides (LOOPS_TRANSACTIONAL_IDS / LOOPS_EVENT_NAMES): first, reminder, final, ...
        self._transactional_ids = dict(settings.transactional_ids)
        self._event_names = dict(settings.event_names)
        self._base = settings.api_base.rstrip("/")
        self._timeout = settings.timeout_seconds
        self._session = session if session is not None else requests.Session()
        self.bucket = bucket if bucket is not None else TokenBucket(settings.rate_per_second)

    def send(self, message: Message, idempotency_key: str) -> SendResult:
        """Send `message` once per `idempotency_key`; a key Loops has already seen counts as sent."""
        transactional_id = _first(self._transactional_ids, message.template_keys()) or self._transactional_id
        if transactional_id:
            what = "transactional email"
            path = "/v1/transactional"
            body = {
                "transactionalId": transactional_id,
                "email": message.email,
                "dataVariables": transactional_variables(message),
            }
        else:
            event_name = _first(self._event_names, message.template_keys()) or self._event_name
            what = f"event {event_name!r}"
            path = "/v1/events/send"
            body = {"email": message.email, "eventName": event_name, "eventProperties": event_properties(message)}
        secrets = (message.email,)
        response = self._request(
            "POST", path, what, secrets, json=body, headers={"Idempotency-Key": loops_idempotency_key(idempotency_key)}
        )
        if response.status_code == 409:
            log.info(
                "loops already accepted this message (409 on its idempotency key) for customer %s",
                message.customer_id,
                extra={"provider": self.name, "invoice_id": message.invoice.invoice_id},
            )
            return SendResult(provider=self.name, duplicate=True)
        if not response.ok:
            raise self._error(response, what, secrets)
        payload = http.json_object(response)
        if payload.get("success") is False:
            raise MessengerRejected(f"Loops did not accept the {what}: {self._detail(response, secrets)}")
        log.info(
            "loops accepted the %s for customer %s",
            what,
            message.customer_id,
            extra={"provider": self.name, "invoice_id": message.invoice.invoice_id},
        )
        message_id = payload.get("id")
        return SendResult(provider=self.name, message_id=message_id if isinstance(message_id, str) else None)

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        """A team alert: the `alert` transactional email of LOOPS_TRANSACTIONAL_IDS (data `subject`, `text`),
        else the event `teamAlert` on the team member's contact."""
        transactional_id = self._transactional_ids.get("alert")
        variables = {"subject": subject, "text": text}
        if transactional_id:
            what, path = "alert email", "/v1/transactional"
            body: dict[str, Any] = {"transactionalId": transactional_id, "email": email, "dataVariables": variables}
        else:
            event_name = self._event_names.get("alert", "teamAlert")
            what, path = f"alert event {event_name!r}", "/v1/events/send"
            body = {"email": email, "eventName": event_name, "eventProperties": variables}
        secrets = (email,)
        response = self._request(
            "POST", path, what, secrets, json=body, headers={"Idempotency-Key": loops_idempotency_key(idempotency_key)}
        )
        if response.status_code == 409:
            return SendResult(provider=self.name, duplicate=True)
        if not response.ok:
            raise self._error(response, what, secrets)
        message_id = http.json_object(response).get("id")
        return SendResult(provider=self.name, message_id=message_id if isinstance(message_id, str) else None)

    def check(self) -> str:
        """Verify the API key with `GET /v1/api-key`; return the team and what a send will do."""
        response = self._request("GET", "/v1/api-key", "API key check", ())
        if not response.ok:
            raise self._error(response, "API key check", ())
        team = http.json_object(response).get("teamName") or "(unnamed team)"
        mode = (
            f"transactional email {self._transactional_id}" if self._transactional_id else f"event {self._event_name!r}"
        )
        return f"Loops team {team}: sends {mode}"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, secrets: tuple[str, ...], **kwargs: Any) -> requests.Response:
        if not self._api_key:
            raise ConfigurationNeeded("LOOPS_API_KEY is not set, so Loops cannot send recovery messages")
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            **kwargs.pop("headers", {}),
        }
        return http.call(
            self._session,
            self.bucket,
            "Loops",
            method,
            self._base + path,
            what=what,
            timeout=self._timeout,
            headers=headers,
            **kwargs,
        )

    def _detail(self, response: requests.Response, secrets: tuple[str, ...]) -> str:
        """Loops' own `message` (or legacy `error`) text, scrubbed of the key and the email."""
        payload = http.json_object(response)
        text = payload.get("message")
        error = payload.get("error")
        if not text and isinstance(error, str):
            text = error
        if not text and isinstance(error, dict):
            text = error.get("message") or error.get("reason")
        text = str(text) if text else (response.reason or "no details")
        return scrub(text, (self._api_key or "", *secrets))[:_DETAIL_MAX]

    def _error(self, response: requests.Response, what: str, secrets: tuple[str, ...]) -> Exception:
        status = response.status_code
        detail = self._detail(response, secrets)
        refused = http.refusal(
            response,
            self.bucket,
            "Loops",
            what=what,
            detail=detail,
            rate_limit_wait=lambda: _retry_after(response),
            credentials="LOOPS_API_KEY",
        )
        if refused is not None:
            return refused
        hint = ""
        if status == 404 and self._transactional_id:
            hint = " (check LOOPS_TRANSACTIONAL_ID and that the transactional email is published)"
        return MessengerRejected(f"Loops rejected the {what} with HTTP {status}{hint}: {detail}")
