"""Intercom as the Messenger: a data event on the customer's contact, which an Intercom Series or
outbound message turns into the email.

API pages this wraps (base `INTERCOM_API_BASE`: US https://api.intercom.io by default, EU
https://api.eu.intercom.io, AU https://api.au.intercom.io; https://developers.intercom.com/building-apps/docs/rest-apis):
- Search contacts, `POST /contacts/search`:
  https://developers.intercom.com/docs/references/rest-api/api.intercom.io/contacts/searchcontacts
- Create a contact, `POST /contacts`:
  https://developers.intercom.com/docs/references/rest-api/api.intercom.io/contacts/createcontact
- Submit a data event, `POST /events`, and its metadata types (rich link `{"url", "value"}`, monetary
  amount `{"amount": minor units, "currency"}`):
  https://developers.intercom.com/docs/references/rest-api/api.intercom.io/data-events/createdataevent
- Event de-duplication (app, contact, event name, `created_at` and metadata identify an event; a
  duplicate is answered 202 like any other):
  https://developers.intercom.com/docs/references/1.1/rest-api/data-events/event-de-duplication
- Identify the token, `GET /me`: https://developers.intercom.com/docs/references/rest-api/api.intercom.io/admins/identifyadmin
- Rate limits (per app, in 10-second windows; 429 with `X-RateLimit-Reset`):
  https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting

Intercom has no idempotency header. A retried send is made a duplicate Intercom ignores by sending
the same `created_at` (the message's creation time) and the same metadata; so the metadata carries
only values that stay the same for one notification. Error texts are scrubbed of the access token and
the customer's email before they are raised.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from datetime import datetime
from typing import Any

import requests

from webhook_app.adapters import Message, SendResult, http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.config import IntercomSettings
from webhook_app.errors import ConfigurationNeeded, MessengerRejected, TransientError
from webhook_app.observability import scrub

log = logging.getLogger(__name__)

INTERCOM_VERSION = "2.11"  # pinned so a workspace's default version cannot change our payloads
# Intercom's default for a private app is 10,000 calls a minute, metered in 10-second windows.
INTERCOM_RATE_PER_SECOND = 10_000 / 60
METADATA_LIMIT = 10  # the design contract's ceiling for event metadata
DEFAULT_RETRY_AFTER = 10.0  # one rate-limit window, when Intercom gives no reset time
_CONFLICT_ID = re.compile(r"\bid=([A-Za-z0-9]+)")
_DETAIL_MAX = 300


def unix_seconds(moment: datetime) -> int:
    """A datetime as a UTC unix timestamp; a naive datetime is taken as UTC (how the app stores time)."""
    return calendar.timegm(moment.utctimetuple())


def event_metadata(message: Message) -> dict[str, Any]:
    """The design contract's Intercom metadata: at most 10 keys, contract names first, no empty values.

    Intercom metadata values are strings, numbers, dates, links, rich links and monetary amounts; there
    is no boolean type, so `is_final_notice` is the string "true" or "false".
    """
    invoice = message.invoice
    candidates: dict[str, Any] = {
        "update_payment_url": {"url": message.update_payment_url, "value": "Update payment method"},
        "amount_due": {"amount": invoice.amount_due, "currency": invoice.currency.lower()},
        "invoice_id": invoice.invoice_id,
        "invoice_number": invoice.number,
        "hosted_invoice_url": invoice.hosted_invoice_url,
        "attempt_count": invoice.attempt_count,
        "step": message.step,
        "is_final_notice": "true" if message.is_final_notice else "false",
        "message_kind": message.kind,
    }
    present = [(key, value) for key, value in candidates.items() if value not in (None, "")]
    return dict(present[:METADATA_LIMIT])


class IntercomMessenger:
    """Finds (or creates) the customer's contact and submits the recovery event to it.

    Every HTTP call takes a token from `bucket`; pass one bucket to every messenger that uses the
    same Intercom app, since Intercom's limit is per app.
    """

    name = "intercom"

    def __init__(
        self, settings: IntercomSettings, session: requests.Session | None = None, bucket: TokenBucket | None = None
    ):
        self._token = settings.access_token
        self._base = settings.api_base.rstrip("/")
        self._event_name = settings.event_name
        self._timeout = settings.timeout_seconds
        self._session = session if session is not None else requests.Session()
        self.bucket = bucket if bucket is not None else TokenBucket(INTERCOM_RATE_PER_SECOND)

    def send(self, message: Message, idempotency_key: str) -> SendResult:
        """Submit the recovery event; a retry repeats `created_at` and metadata so Intercom drops it.

        Intercom answers a duplicate with the same 202 as a new event, so `duplicate` is never set here.
        """
        secrets = (message.email,)
        contact_id = self.find_or_create_contact(message)
        body = {
            "event_name": self._event_name,
            "created_at": unix_seconds(message.created_at),
            "id": contact_id,
            "metadata": event_metadata(message),
        }
        response = self._request("POST", "/events", "event", secrets, json=body)
        if not response.ok:
            raise self._error(response, f"event {self._event_name!r}", secrets)
        log.info(
            "intercom accepted event %r for customer %s (key %s)",
            self._event_name,
            message.customer_id,
            idempotency_key,
            extra={"provider": self.name, "invoice_id": message.invoice.invoice_id},
        )
        return SendResult(provider=self.name)

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        """Intercom sends to customers' contacts, not to the team: alert emails need Loops."""
        raise ConfigurationNeeded(
            "ALERT_EMAIL needs MESSAGING_PROVIDER=loops; with Intercom use ALERT_SLACK_WEBHOOK_URL"
        )

    def find_or_create_contact(self, message: Message) -> str:
        """The Intercom id of the customer's contact: by external_id (Stripe customer id), then by
        email, else a new `user` contact carrying both."""
        contact = self._search("external_id", message.customer_id, message) or self._search(
            "email", message.email, message
        )
        if contact is not None:
            return str(contact["id"])
        return self._create_contact(message)

    def check(self) -> str:
        """Verify the access token with `GET /me`; return the workspace it belongs to."""
        response = self._request("GET", "/me", "token check", ())
        if not response.ok:
            raise self._error(response, "token check", ())
        app = http.json_object(response).get("app") or {}
        workspace = app.get("name") or "(unnamed workspace)"
        if app.get("id_code"):
            workspace += f" ({app['id_code']})"
        return (
            f"Intercom workspace {workspace} at {self._base}, API {INTERCOM_VERSION}: sends event {self._event_name!r}"
        )

    # -- contacts ------------------------------------------------------------------------------------

    def _search(self, field: str, value: str, message: Message) -> dict[str, Any] | None:
        secrets = (message.email,)
        body = {"query": {"field": field, "operator": "=", "value": value}}
        response = self._request("POST", "/contacts/search", f"contact search by {field}", secrets, json=body)
        if not response.ok:
            raise self._error(response, f"contact search by {field}", secrets)
        contacts = [c for c in http.json_object(response).get("data") or [] if isinstance(c, dict) and c.get("id")]
        if not contacts:
            return None
        # An email can match a lead and a user; the user is the paying customer's record.
        users = [c for c in contacts if c.get("role") == "user"]
        return (users or contacts)[0]

    def _create_contact(self, message: Message) -> str:
        secrets = (message.email,)
        body = {"role": "user", "external_id": message.customer_id, "email": message.email}
        if message.customer_name:
            body["name"] = message.customer_name
        response = self._request("POST", "/contacts", "contact creation", secrets, json=body)
        if response.status_code == 409:
            # Search lags creation by up to a few minutes, so a contact made moments ago (by us on an
            # earlier attempt, or by the company's app) is missed by search and clashes here.
            detail = self._detail(response, secrets)
            if "archived" in detail.lower():
                raise MessengerRejected(
                    f"Intercom has an archived contact for customer {message.customer_id}; unarchive it to "
                    f"message them (HTTP 409: {detail})"
                )
            match = _CONFLICT_ID.search(detail)
            if match:
                return match.group(1)
            raise TransientError(
                f"Intercom says customer {message.customer_id}'s contact exists but search "
                f"does not show it yet (HTTP 409: {detail})",
                retry_after=60,
            )
        if not response.ok:
            raise self._error(response, "contact creation", secrets)
        contact_id = http.json_object(response).get("id")
        if not isinstance(contact_id, str) or not contact_id:
            raise TransientError("Intercom created a contact but returned no id")
        log.info("intercom contact created for customer %s", message.customer_id, extra={"provider": self.name})
        return contact_id

    # -- HTTP ----------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, secrets: tuple[str, ...], **kwargs: Any) -> requests.Response:
        if not self._token:
            raise ConfigurationNeeded("INTERCOM_ACCESS_TOKEN is not set, so Intercom cannot send recovery messages")
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "Intercom-Version": INTERCOM_VERSION,
        }
        return http.call(
            self._session,
            self.bucket,
            "Intercom",
            method,
            self._base + path,
            what=what,
            timeout=self._timeout,
            headers=headers,
            **kwargs,
        )

    def _detail(self, response: requests.Response, secrets: tuple[str, ...]) -> str:
        """Intercom's `errors[].code: message` list and request id, scrubbed of the token and the email."""
        payload = http.json_object(response)
        parts = []
        for error in payload.get("errors") or []:
            if isinstance(error, dict):
                code, text = error.get("code"), error.get("message")
                parts.append(": ".join(str(p) for p in (code, text) if p))
        text = "; ".join(p for p in parts if p) or response.reason or "no details"
        if payload.get("request_id"):
            text += f" (request {payload['request_id']})"
        return scrub(text, (self._token or "", *secrets))[:_DETAIL_MAX]

    def _error(self, response: requests.Response, what: str, secrets: tuple[str, ...]) -> Exception:
        detail = self._detail(response, secrets)
        refused = http.refusal(
            response,
            self.bucket,
            "Intercom",
            what=what,
            detail=detail,
            rate_limit_wait=lambda: _rate_limit_wait(response),  # the app's limit
            credentials="INTERCOM_ACCESS_TOKEN",
            credentials_hint="; check the token and INTERCOM_API_BASE's region",
        )
        if refused is not None:
            return refused
        return MessengerRejected(f"Intercom rejected the {what} with HTTP {response.status_code}: {detail}")


def _rate_limit_wait(response: requests.Response) -> float:
    """Retry-After if sent, else the seconds until `X-RateLimit-Reset` (a unix time), else one window."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is not None:
        return retry_after
    reset = response.headers.get("X-RateLimit-Reset")
    try:
        return min(max(float(reset) - time.time(), 1.0), 3600.0) if reset else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER
