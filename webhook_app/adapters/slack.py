"""Slack as the team's alert channel: one incoming-webhook post per alert.

API this wraps (`ALERT_SLACK_WEBHOOK_URL`, https://hooks.slack.com/services/T…/B…/…):
- Sending messages using incoming webhooks, `POST <webhook URL>` with a JSON body of `text` (the
  notification fallback) and `blocks` (Block Kit): https://api.slack.com/messaging/webhooks
- Errors (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks and the
  webhooks page's error table): 200 with the body `ok`; 400 `invalid_payload`, `invalid_blocks`,
  `missing_text_or_fallback_or_attachments`, `too_many_attachments` (our message is wrong: permanent)
  or `invalid_token`, `no_team`, `no_service_id` (the URL is wrong); 403 `action_prohibited`,
  `posting_to_general_channel_denied`; 404 `channel_not_found`, `no_service` (the webhook was removed
  or revoked); 410 `channel_is_archived`; 429 rate limited, with `Retry-After`; 500 `rollup_error`.
  Every "the URL no longer leads anywhere" answer holds the alert as ConfigurationNeeded naming
  `ALERT_SLACK_WEBHOOK_URL`; 429, 5xx and network failures are transient (retried).
- Rate limit: about one message per second per webhook, short bursts allowed
  (https://api.slack.com/docs/rate-limits), hence a 1/s token bucket.

Idempotency: Slack incoming webhooks take no idempotency key, and a post that timed out may still have
been delivered. What prevents a second alert is the outbox row's unique key (`webhook_app.alerts.alert_key`);
a retry after a timeout can, rarely, post twice, which for a team alert is the lesser harm.

The webhook URL is a secret (anyone holding it can post to the channel): it never appears in a log
line or an exception message, and network errors are re-raised without the `requests` exception (whose
text contains the URL) chained to them.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import requests

from webhook_app.adapters import SendResult, http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.alerts import Alert, render_blocks, render_text, slack_escape
from webhook_app.errors import ConfigurationNeeded, MessengerRejected, TransientError
from webhook_app.observability import scrub

log = logging.getLogger(__name__)

SETTING = "ALERT_SLACK_WEBHOOK_URL"
DEFAULT_RETRY_AFTER = 1.0  # Slack sends Retry-After with its 429s; this covers one that lacks it
RATE_PER_SECOND = 1.0
TEXT_MAX = 3000  # Slack truncates `text` far later (40,000), but a notification preview shows little

# Body codes meaning the URL itself no longer works, whatever the status they come with.
URL_ERRORS = frozenset(
    {
        "no_service",
        "no_service_id",
        "no_team",
        "invalid_token",
        "team_disabled",
        "no_active_hooks",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "posting_to_general_channel_denied",
    }
)
_DETAIL = re.compile(r"[a-z_]{1,64}")


def webhook_secrets(url: str | None) -> tuple[str, ...]:
    """The strings that must be masked wherever they could be logged: the URL, its path, its token.

    urllib3's debug log prints the request path without the host, so the path is masked on its own.
    """
    if not url:
        return ()
    path = urlsplit(url).path
    token = path.rstrip("/").rsplit("/", 1)[-1]
    return tuple(s for s in (url, path, token) if len(s) >= 6)


class SlackAlerter:
    """Posts team alerts to one Slack incoming webhook; every post first takes a token from `bucket`."""

    name = "slack"

    def __init__(
        self,
        webhook_url: str | None,
        timeout: float,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self._url = (webhook_url or "").strip()
        self._timeout = timeout
        self._session = session if session is not None else requests.Session()
        self.bucket = bucket if bucket is not None else TokenBucket(RATE_PER_SECOND)

    def __repr__(self) -> str:
        return "SlackAlerter(webhook_url=[secret])"  # Sentry and debuggers show reprs of locals

    def send(self, alert: Alert, idempotency_key: str) -> SendResult:
        """Post `alert` once; Slack has no idempotency key, `idempotency_key` only labels the log line."""
        self._require_url()
        body = {"text": slack_escape(render_text(alert))[:TEXT_MAX], "blocks": render_blocks(alert)}
        what = f"{alert.kind.value} alert"
        try:
            response = http.call(
                self._session,
                self.bucket,
                "Slack",
                "POST",
                self._url,
                what=what,
                timeout=self._timeout,
                json=body,
                allow_redirects=False,  # a webhook URL that redirects is not Slack's
            )
        except TransientError as exc:
            # The chained requests exception names the URL: keep only our own, URL-free message.
            raise TransientError(str(exc), retry_after=exc.retry_after) from None
        if response.status_code == 200:
            log.info(
                "slack accepted the %s (key %s)",
                what,
                idempotency_key,
                extra={"provider": alert.provider, "invoice_id": alert.invoice_id},
            )
            return SendResult(provider=self.name)
        raise self._error(response, what)

    def check(self) -> str:
        """Check the URL's shape without posting (a test post would land in the team's channel)."""
        self._require_url()
        return (
            f"Slack incoming webhook on {urlsplit(self._url).hostname} (not posted to: checking would alert the team)"
        )

    # -- helpers --------------------------------------------------------------------------------------

    def _require_url(self) -> None:
        if not self._url:
            raise ConfigurationNeeded(f"{SETTING} is not set, so team alerts cannot be posted to Slack")
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.strip("/"):
            raise ConfigurationNeeded(f"{SETTING} is not a Slack incoming webhook URL (https://hooks.slack.com/…)")

    def _detail(self, response: requests.Response) -> str:
        """Slack's error code from the body (`invalid_payload`, `no_service`, ...), scrubbed and bounded."""
        text = (response.text or "").strip()
        if not _DETAIL.fullmatch(text):
            text = scrub(text, webhook_secrets(self._url))[:200] or (response.reason or "no details")
        return text

    def _error(self, response: requests.Response, what: str) -> Exception:
        status = response.status_code
        detail = self._detail(response)
        refused = http.refusal(
            response,
            self.bucket,
            "Slack",
            what=what,
            detail=detail,
            rate_limit_wait=lambda: _retry_after(response),
            credentials=f"the webhook URL in {SETTING}",
        )
        if refused is not None:
            return refused
        if status in (404, 410) or 300 <= status < 400 or detail in URL_ERRORS:
            return ConfigurationNeeded(
                f"Slack answered {status} {detail} to the {what}: the webhook in {SETTING} was removed, "
                "revoked or points at an archived channel; create a new one and set it"
            )
        return MessengerRejected(f"Slack rejected the {what} with HTTP {status}: {detail}")


def _retry_after(response: requests.Response) -> float:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return DEFAULT_RETRY_AFTER if retry_after is None else retry_after
