"""`webhook-app stripe register-endpoint`: the Stripe webhook endpoint, subscribed to exactly the
event types the app handles (`translate.TRANSLATORS`).

Stripe returns an endpoint's signing secret only in the create response, so it is printed once
then; an update keeps the secret the app already has.
https://docs.stripe.com/api/webhook_endpoints/create
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

import stripe

from webhook_app.providers.stripe.admin import StripeAdminPort
from webhook_app.providers.stripe.portal import MANAGED_BY
from webhook_app.providers.stripe.translate import TRANSLATORS

DESCRIPTION = "webhook-app payment recovery"
WEBHOOK_PATH = "/webhooks/stripe"
# POST /v1/webhook_endpoints takes `api_version` from a list of dated versions ("2024-06-20",
# "2025-03-31.basil"; Stripe's OpenAPI spec); `description` is at most 5000 characters (ours is fixed).
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def handled_event_types() -> list[str]:
    """The event types the app has a handler for, sorted."""
    return sorted(TRANSLATORS)


@dataclass(frozen=True)
class EndpointResult:
    """The endpoint registered; `secret` only when it was just created."""

    endpoint_id: str
    url: str
    created: bool
    enabled_events: tuple[str, ...]
    secret: str | None = None
    api_version: str | None = None
    others: tuple[str, ...] = ()  # other endpoints this app registered, at other URLs


def validate_url(url: str) -> list[str]:
    """Problems with `url` as a webhook URL (empty when fine); raises ValueError when unusable."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--url must be an absolute http(s) URL ending in {WEBHOOK_PATH}")
    warnings = []
    if parsed.scheme != "https":
        warnings.append("live mode requires an https URL; Stripe accepts http only in test mode")
    if not parsed.path.rstrip("/").endswith(WEBHOOK_PATH):
        warnings.append(f"the app receives webhooks at {WEBHOOK_PATH}; this URL has a different path")
    return warnings


def validate_api_version(api_version: str | None) -> None:
    """Raise ValueError when `api_version` is not one of Stripe's dated versions (e.g. 2025-03-31.basil)."""
    if api_version is not None and not API_VERSION.match(api_version):
        raise ValueError(
            f"{api_version!r} is not a Stripe API version: they look like 2024-06-20 or 2025-03-31.basil "
            "(https://docs.stripe.com/upgrades)"
        )


def register_endpoint(admin: StripeAdminPort, url: str, api_version: str | None = None) -> EndpointResult:
    """Create the endpoint for `url`, or update the one already there to exactly the handled types."""
    events = handled_event_types()
    existing = list(admin.list_webhook_endpoints())
    same_url = [e for e in existing if e.get("url") == url]
    others = tuple(
        e["id"] for e in existing if e.get("url") != url and (e.get("metadata") or {}).get("managed_by") == MANAGED_BY
    )
    params = {"url": url, "enabled_events": events, "description": DESCRIPTION, "metadata": {"managed_by": MANAGED_BY}}
    if same_url:
        endpoint = admin.update_webhook_endpoint(same_url[0]["id"], {**params, "disabled": False})
        return EndpointResult(
            endpoint["id"],
            endpoint.get("url", url),
            False,
            tuple(endpoint.get("enabled_events") or events),
            api_version=endpoint.get("api_version"),
            others=others,
        )
    # Pin the payload version to the SDK's, so events and API reads share one invoice shape
    # (invoices.py reads both generations anyway). Stripe cannot change it later on update.
    endpoint = admin.create_webhook_endpoint({**params, "api_version": api_version or stripe.api_version})
    return EndpointResult(
        endpoint["id"],
        endpoint.get("url", url),
        True,
        tuple(endpoint.get("enabled_events") or events),
        secret=endpoint.get("secret"),
        api_version=endpoint.get("api_version"),
        others=others,
    )
