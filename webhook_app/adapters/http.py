"""The HTTP call every email-tool adapter makes: rate limited, with a timeout, failures classified."""
from __future__ import annotations

import requests

from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import TransientError


def call(session: requests.Session, bucket: TokenBucket, provider: str, method: str, url: str, *, what: str,
         timeout: float, **kwargs) -> requests.Response:
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


def json_object(response: requests.Response) -> dict:
    """The response body as a dict; {} when it is not a JSON object."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
