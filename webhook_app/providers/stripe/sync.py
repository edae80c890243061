"""`webhook-app events sync`: catch up on events Stripe could not deliver.

Stripe retries a failed delivery for up to 3 days (live mode); after a longer outage, or a wrong
secret, those events are gone from the webhook path but still listed by the API for 30 days.
`delivery_success=false` lists events still pending or failed for some endpoint; `--since` also lists
every event of the handled types from a date, for gaps Stripe does not know about (an endpoint that
was missing or disabled). Each goes into the inbox through the same unique insert as a delivery, so
an event already stored is left alone and the worker processes only what was missing.
https://docs.stripe.com/api/events/list
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from webhook_app import inbox
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.providers.stripe.endpoints import handled_event_types
from webhook_app.services import Services

log = logging.getLogger(__name__)

RETENTION = timedelta(days=30)  # how far back Stripe lists events
TYPES_PER_REQUEST = 20  # Stripe's limit for the `types` filter


@dataclass
class SyncResult:
    """What the sync saw and did."""

    listed: int = 0
    inserted: int = 0
    already_stored: int = 0
    ignored: int = 0  # stored as ignored: the other mode than STRIPE_SECRET_KEY's
    malformed: list[str] = field(default_factory=list)


def sync_events(svc: Services, since: datetime | None = None) -> SyncResult:
    """Insert the handled events Stripe lists as undelivered (and, with `since`, all of them since then).

    Page requests go through Stripe's rate limit (the admin port's pacer), retrying 429s and failures.
    """
    from webhook_app.providers.stripe import StripeProvider

    provider = svc.provider("stripe")
    assert isinstance(provider, StripeProvider)
    admin = provider.admin
    if admin is None:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set: events sync reads events from Stripe")
    types = handled_event_types()
    # `types` takes at most 20 names per request.
    chunks = [types[i : i + TYPES_PER_REQUEST] for i in range(0, len(types), TYPES_PER_REQUEST)]
    listings = [admin.list_events(types=chunk, delivery_success=False) for chunk in chunks]
    if since is not None:
        created_gte = int(since.replace(tzinfo=UTC).timestamp())
        listings += [admin.list_events(types=chunk, created_gte=created_gte) for chunk in chunks]

    result = SyncResult()
    seen: set[str] = set()
    for listing in listings:
        for envelope, raw in listing:
            event_id = str(envelope.get("id"))
            if event_id in seen:
                continue  # the two listings overlap
            seen.add(event_id)
            result.listed += 1
            try:
                event = provider.incoming(raw.encode("utf-8"))
            except WebhookRejected as exc:
                result.malformed.append(f"{event_id}: {exc}")
                continue
            stored = inbox.store(svc.db, provider.name, event, svc.clock.now())
            if not stored:
                result.already_stored += 1
            elif event.ignored_reason:
                result.ignored += 1
            else:
                result.inserted += 1
                log.info(
                    "missed event stored by events sync",
                    extra={"event_id": event.event_id, "event_type": event.type, "provider": provider.name},
                )
    if result.inserted:
        svc.wake_worker()
    return result
