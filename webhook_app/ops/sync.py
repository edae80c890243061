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
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import ConfigurationNeeded
from webhook_app.intake import Rejected, parse_event
from webhook_app.ops.campaign import STRIPE_RATE_LIVE, STRIPE_RATE_TEST
from webhook_app.ops.endpoints import handled_event_types
from webhook_app.ops.pacing import Pacer
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


def sync_events(svc: Services, since: datetime | None = None, call: Pacer | None = None) -> SyncResult:
    """Insert the handled events Stripe lists as undelivered (and, with `since`, all of them since then).

    `call` paces each page request; by default under the campaign's Stripe rate, retrying 429s.
    """
    if svc.billing is None:
        raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set: events sync reads events from Stripe")
    if call is None:
        call = Pacer("stripe", TokenBucket(STRIPE_RATE_LIVE if svc.settings.stripe_livemode else STRIPE_RATE_TEST))
    types = handled_event_types()
    # `types` takes at most 20 names per request.
    chunks = [types[i : i + TYPES_PER_REQUEST] for i in range(0, len(types), TYPES_PER_REQUEST)]
    listings = [svc.billing.list_events(types=chunk, delivery_success=False, call=call) for chunk in chunks]
    if since is not None:
        created_gte = int(since.replace(tzinfo=UTC).timestamp())
        listings += [svc.billing.list_events(types=chunk, created_gte=created_gte, call=call) for chunk in chunks]

    result = SyncResult()
    seen: set[str] = set()
    expected_mode = svc.settings.stripe_livemode
    for listing in listings:
        for envelope, raw in listing:
            if envelope.get("id") in seen:
                continue  # the two listings overlap
            seen.add(envelope.get("id"))
            result.listed += 1
            try:
                event = parse_event(raw.encode("utf-8"))
            except Rejected as exc:
                result.malformed.append(f"{envelope.get('id')}: {exc}")
                continue
            mismatch = expected_mode is not None and event["livemode"] != expected_mode
            stored = inbox.store(
                svc.db,
                event,
                raw,
                svc.clock.now(),
                ignored_reason="livemode does not match STRIPE_SECRET_KEY" if mismatch else None,
            )
            if not stored:
                result.already_stored += 1
            elif mismatch:
                result.ignored += 1
            else:
                result.inserted += 1
                log.info(
                    "missed event stored by events sync", extra={"event_id": event["id"], "event_type": event["type"]}
                )
    if result.inserted:
        svc.wake_worker()
    return result
