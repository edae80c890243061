"""Settled figures of recoveries: what each recovered invoice put in the account's balance.

A recovery is written inside a handler's transaction, where no API call belongs (a slow provider
would hold the case's lock, and a rollback would leave nothing to show for the call). So the ledger
row is written `pending`, and the worker's upkeep (`Worker.upkeep`) looks the figures up afterwards,
outside any transaction, through the provider's `SettlementSource` (Stripe: the charge's balance
transaction), then fills them in with one guarded UPDATE (`ledger.record_settlement`): once, never
touching the amount. Twin workers may both look a row up; only the first fill counts.

Outcomes per row: settled; `none` (no charge through the provider paid it); `unavailable` (a provider
without settlement reports, a permanent refusal, or still unsettled after `GIVE_UP_AFTER`); or left
pending (not settled yet, the provider not configured, or a transient failure, which also ends the
pass: the next one retries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from webhook_app import ledger
from webhook_app.errors import ConfigurationNeeded, PermanentError, SettlementNotReady, TransientError
from webhook_app.observability import scrub
from webhook_app.providers.base import SettlementProvider
from webhook_app.services import Services
from webhook_app.states import SettlementStatus

log = logging.getLogger(__name__)

BATCH_SIZE = 50
GIVE_UP_AFTER = timedelta(days=7)  # card payments settle at once; a charge unsettled after a week will not be


@dataclass
class SettlementPass:
    """What one pass did."""

    settled: int = 0
    none: int = 0
    unavailable: int = 0
    waiting: int = 0
    stopped: str | None = None  # why the pass ended early (a transient failure), if it did


def settle_pending(svc: Services, limit: int = BATCH_SIZE) -> SettlementPass:
    """Look up the settled figures of up to `limit` pending recoveries and record them."""
    outcome = SettlementPass()
    with svc.db.reading() as s:
        pending = ledger.pending_settlements(s, limit)
    for row in pending:
        now = svc.clock.now()
        context = {"invoice_id": row.invoice_id, "provider": row.provider}
        provider = svc.providers.get(row.provider)
        if not isinstance(provider, SettlementProvider):
            _close(svc, row.id, SettlementStatus.UNAVAILABLE, outcome)
            continue
        source = provider.settlements
        if source is None:  # credentials not set yet: the row waits for them, behind the others
            with svc.db.session() as s:
                ledger.settlement_checked(s, row.id, now)
            outcome.waiting += 1
            continue
        try:
            settled = source.settlement(row.invoice_id)
        except SettlementNotReady as exc:
            if now - row.created_at > GIVE_UP_AFTER:
                log.warning("settlement given up: %s", scrub(str(exc)), extra=context)
                _close(svc, row.id, SettlementStatus.UNAVAILABLE, outcome)
            else:
                with svc.db.session() as s:
                    ledger.settlement_checked(s, row.id, now)
                outcome.waiting += 1
            continue
        except (TransientError, ConfigurationNeeded) as exc:
            outcome.stopped = scrub(f"{exc.__class__.__name__}: {exc}")
            log.warning("settlement look-ups paused until the next pass: %s", outcome.stopped, extra=context)
            break
        except PermanentError as exc:
            log.warning("no settlement for this recovery: %s", scrub(str(exc)), extra=context)
            _close(svc, row.id, SettlementStatus.UNAVAILABLE, outcome)
            continue
        if settled is None:
            _close(svc, row.id, SettlementStatus.NONE, outcome)
            continue
        with svc.db.session() as s:
            if ledger.record_settlement(s, row.id, settled, now):
                outcome.settled += 1
    return outcome


def _close(svc: Services, entry_id: int, status: SettlementStatus, outcome: SettlementPass) -> None:
    with svc.db.session() as s:
        if ledger.close_settlement(s, entry_id, status, svc.clock.now()):
            if status == SettlementStatus.NONE:
                outcome.none += 1
            else:
                outcome.unavailable += 1
