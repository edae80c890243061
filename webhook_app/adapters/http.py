"""The HTTP call every email-tool adapter makes: rate limited, with a timeout, failures classified."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.errors import ConfigurationNeeded, TransientError


def call(
    session: requests.Session,
    bucket: TokenBucket,
    provider: str,
    method: str,
    url: str,
    *,
    what: str,
    timeout: float,
    **kwargs: Any,
) -> requests.Response:
    """Send one request after taking a token; a network failure becomes a TransientError naming `what`.

    A timed-out POST may still have reached the provider: the retry carries the same idempotency key
    (Loops) or the same event (Intercom), so the provider recognises it.
    """
    bucket.acquire()
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout as exc:
        raise TransientError(f"{provider} did not answer the {what} within {timeout:g}s") from exc
    except requests.ConnectionError as exc:
        raise TransientError(f"could not reach {provider} for the {what} (connection error)") from exc
    except requests.RequestException as exc:
        raise TransientError(f"the {what} to {provider} failed ({type(exc).__name__})") from exc


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response body as a dict; {} when it is not a JSON object."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def refusal(
    response: requests.Response,
    bucket: TokenBucket,
    provider: str,
    *,
    what: str,
    detail: str,
    rate_limit_wait: Callable[[], float],
    credentials: str,
    credentials_hint: str = "",
) -> Exception | None:
    """The classified error for a refused request, or None for a 4xx the adapter words itself.

    429: every sender sharing the bucket pauses for `rate_limit_wait()`, then retries; 5xx and 408: retry
    later; 401 and 403: bad credentials are the operator's to fix, so messages are held, not dropped.
    """
    status = response.status_code
    if status == 429:
        retry_after = rate_limit_wait()
        bucket.pause_for(retry_after)
        return TransientError(
            f"{provider} rate limit (429) on the {what}; retry in {retry_after:g}s", retry_after=retry_after
        )
    if status >= 500 or status == 408:
        return TransientError(
            f"{provider} answered {status} to the {what}: {detail}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        return ConfigurationNeeded(
            f"{provider} rejected {credentials} (HTTP {status}{credentials_hint}) on the {what}: {detail}"
        )
    return None
