"""Structured logs (one JSON object per line) and Sentry, both scrubbed of secrets and emails."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from webhook_app.config import Settings

# Anything that looks like an email address or a Stripe / provider secret is masked wherever it
# would leave the process: log lines, exception messages, Sentry events.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_SECRET = re.compile(r"\b(?:sk|rk|whsec|pk)_(?:live|test)?_?[A-Za-z0-9]{6,}\b|\bBearer\s+[A-Za-z0-9._\-]+")
_CONTEXT_FIELDS = ("event_id", "event_type", "case_id", "notification_id", "invoice_id", "provider")
# A provider's own role addresses in its error texts ("contact support@stripe.com") are instructions for
# the operator, never a customer's: they are kept. Any other address at those domains is masked.
_PROVIDER_DOMAINS = (
    "stripe.com",
    "loops.so",
    "intercom.io",
    "intercom.com",
    "chargebee.com",
    "recurly.com",
    "paddle.com",
    "braintreepayments.com",
    "paypal.com",
)
_ROLE_MAILBOXES = ("support", "help", "billing", "security", "privacy", "sales", "compliance")
# Only real HTML tags: "sqlite:///<absolute path>" in our own texts is not markup.
_TAG = re.compile(
    r"</?(?:html|head|body|title|h[1-6]|p|div|span|center|hr|br|pre|code|a|b|i|u|em|strong|small|table|tr|td|th|"
    r"thead|tbody|ul|ol|li|meta|link|script|style|noscript|img|form|input|button|label|footer|header|nav|main|"
    r"section|article)\b[^<>]{0,500}/?>",
    re.IGNORECASE,
)
_PAGE = re.compile(r"<(?:!doctype|html)\b.*?(?:</html>|$)", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def _mask_email(match: re.Match[str]) -> str:
    local, _, domain = match.group(0).rpartition("@")
    domain = domain.lower()
    provider = any(domain == d or domain.endswith("." + d) for d in _PROVIDER_DOMAINS)
    return match.group(0) if provider and local.lower() in _ROLE_MAILBOXES else "[email]"


def scrub(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Mask emails (not a provider's support address), Stripe-style keys and any configured secret."""
    for secret in extra_secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[secret]")
    text = _SECRET.sub("[secret]", text)
    return _EMAIL.sub(_mask_email, text)


def mask_email(email: str) -> str:
    """`jane.doe@example.com` as `ja***@example.com`: a developer can tell whose it is; a log is not a
    mailing list. The scrubber leaves this form alone (`*` is not part of an address)."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:2]}***@{domain}"


def plain_text(text: str, limit: int = 500) -> str:
    """`text` without HTML markup (an error page from a proxy or load balancer), on one line.

    Keeps a provider's message readable when it answered with a page instead of JSON.
    """
    page = _PAGE.search(text)
    if page:
        title = _TITLE.search(page.group(0))
        named = f" ({_SPACE.sub(' ', title.group(1)).strip()})" if title else ""
        text = text[: page.start()] + f"an HTML page{named}" + text[page.end() :]
    if "<" in text:
        text = _TAG.sub(" ", text)
        for entity, char in (
            ("&nbsp;", " "),
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", '"'),
            ("&#39;", "'"),
        ):
            text = text.replace(entity, char)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# One encoder for every line: `json.dumps(..., default=str)` builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the event/case context passed as `extra`.

    Every acknowledged webhook writes a line, so this is on the hot path: the timestamp's seconds are
    formatted once per second, and the encoder is built once.
    """

    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = secrets
        self._second: tuple[int, str] = (-1, "")  # (a second, its text), swapped as one object

    def _timestamp(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if second != int(record.created):  # threads may both format it: the same text either way
            second, text = int(record.created), self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage(), self.secrets),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info), self.secrets)
        return _ENCODER.encode(entry)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send the app's logs to `stream` as JSON lines: stdout by default (Heroku's log router reads it);
    the CLI passes stderr. Without `stream`, a handler already in place keeps its stream."""
    # Our lines do not carry the caller's file and line: do not walk the stack for them on every
    # record (the "Optimization" section of the logging HOWTO; the most expensive part of a log call
    # on the webhook path). Process and thread ids stay: gunicorn's own log lines print the pid.
    logging._srcfile = None
    root = logging.getLogger("webhook_app")
    root.setLevel(settings.log_level)
    formatter = JsonFormatter(settings.secrets())
    for handler in root.handlers:
        if getattr(handler, "_webhook_app", False):
            handler.setFormatter(formatter)
            if stream is not None and isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)
            return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler._webhook_app = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.propagate = True  # tests capture through the root logger too


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v, secrets) for v in value]
    return value


def make_before_send(settings: Settings) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """A Sentry `before_send` hook that masks emails and secrets anywhere in the event."""
    secrets = settings.secrets()

    def before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = _scrub_value(event, secrets)
        return scrubbed

    return before_send


def init_sentry(settings: Settings, transport: Any = None) -> bool:
    """Initialise Sentry when `SENTRY_DSN` is set; returns whether it was."""
    if not settings.sentry.dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    options: dict[str, Any] = dict(
        dsn=settings.sentry.dsn,
        environment=settings.sentry.environment,
        traces_sample_rate=settings.sentry.traces_sample_rate,
        # send_default_pii is left unset: its default collects no user data (and setting it is deprecated).
        max_request_body_size="never",  # webhook bodies carry customer emails
        integrations=[FlaskIntegration()],
        before_send=make_before_send(settings),
    )
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True


def report_exception(exc: BaseException) -> None:
    """Send `exc` to Sentry when it is configured (a no-op otherwise)."""
    try:
        import sentry_sdk

        sentry_sdk.capture_exception(exc)
    except Exception:  # reporting must never break the caller
        logging.getLogger(__name__).debug("sentry capture failed", exc_info=True)
