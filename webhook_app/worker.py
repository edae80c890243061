"""The worker: claim due inbox events and outbox notifications, process them, record the outcome.

Events: the handler's changes and the event's `done` mark commit in one transaction, so a crash at
any point leaves either both or neither; an abandoned claim is retaken after its lease.
Notifications: sent by `sending.send_notification` (external calls, idempotency keys).
Transient errors retry with exponential backoff and jitter; permanent ones stop with the reason kept;
unknown errors are bugs: reported to Sentry and stopped as failed (replay them once fixed).
Several threads per process make sending concurrent (each send waits on Stripe and the email tool).
Upkeep, on one thread at a time every WORKER_UPKEEP_SECONDS: the settled figures of new recoveries
(`settlement.py`, API reads outside any transaction) and the personal-data retention sweep (`privacy.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from webhook_app import alert_outbox, handlers, inbox, outbox, privacy, sending, settlement
from webhook_app.claims import Claim, any_due, backoff_seconds, claim, finish
from webhook_app.dunning import Cadence
from webhook_app.errors import ConfigurationNeeded, PermanentError, ResourceMissing, TransientError
from webhook_app.models import Event, Notification, TeamAlert
from webhook_app.observability import report_exception, scrub
from webhook_app.outbox import Batch, claim_next
from webhook_app.providers import dashboard_links
from webhook_app.services import Services
from webhook_app.states import EventStatus, NotificationStatus

log = logging.getLogger(__name__)

# Losing a database connection or a unique-constraint race with a twin worker is worth a retry.
TRANSIENT_DB_ERRORS = (OperationalError, IntegrityError)
ADMIT_RECHECK_SECONDS = 0.25  # a thread held back by `Worker.admit` asks again after this long


class Worker:
    """Drains the inbox and the outbox of one database. Safe to run in many processes at once."""

    def __init__(self, svc: Services, *, batch_size: int = 20):
        self.svc = svc
        self.settings = svc.settings
        self.batch_size = batch_size
        self.stop_event = threading.Event()
        self.sent_ids: list[int] = []  # notifications this worker sent (campaign reports read it)
        self.claim_tokens: set[str] = set()  # outbox claims this worker made
        self._digest_checked: datetime | None = None
        self._lock = threading.Lock()
        self.cadence = Cadence.from_settings(svc.settings.dunning)
        self._upkeep_lock = threading.Lock()
        self._next_upkeep = 0.0  # time.monotonic() of the next upkeep: the first pass runs at once
        # Whether sending thread `index` may take work now (None: always). The embedded worker narrows
        # itself while its web process acknowledges a burst (`webhook_app.embedded`).
        self.admit: Callable[[int], bool] | None = None
        # When a look for due events last found none, and this process's stored deliveries then
        # (`_events_may_be_due`); None: look at the next pass.
        self._events_idle: tuple[datetime, int] | None = None

    # -- one pass -------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Process everything due now (events first, then notifications, upkeep when due); returns items handled."""
        self.upkeep()
        total = 0
        while True:
            # One notification per claim: sending gathers the customer's other due invoices into it.
            handled = self.pass_once()
            total += handled
            if handled == 0 or self.stop_event.is_set():
                return total

    def pass_once(self, index: int = 0) -> int:
        """One round: a batch of events, one customer's due message, one team alert; returns items handled.

        A read first says what is due, and only that is claimed: an idle or half-idle worker never
        takes SQLite's write lock, which intake needs for every delivery. A worker busy sending looks
        for events as often as an idle one polls, not before every message (`_events_may_be_due`).
        """
        events, messages, alerts = self._due_now()
        handled = self.process_events(index) if events else 0
        # One notification per claim: sending gathers the customer's other due invoices into it.
        handled += self.send_notifications(limit=1) if messages else 0
        handled += self.send_alerts(limit=1, claim_due=alerts)
        return handled

    def _due_now(self) -> tuple[bool, bool, bool]:
        """(events, messages, team alerts) due now, read in one transaction that takes no write lock.

        Only SQLite needs the look first: a claim there takes the database's one write lock even when
        it finds nothing. A PostgreSQL claim that finds nothing locks nothing, so it goes straight to
        the claims and saves the worker three queries per pass.
        """
        now, arrivals = self.svc.clock.now(), self.svc.arrivals
        look = self._events_may_be_due(now, arrivals)
        if self.svc.db.dialect != "sqlite":
            return look, True, bool(self.svc.alerters)
        with self.svc.db.reading() as s:
            due = (
                look and any_due(s, Event, now),
                outbox.any_due(s, now),
                bool(self.svc.alerters) and alert_outbox.any_due(s, now),
            )
        if look and not due[0]:
            self._events_idle = (now, arrivals)
        return due

    def _events_may_be_due(self, now: datetime, arrivals: int) -> bool:
        """Whether to look for due events in this pass.

        Not again within WORKER_POLL_SECONDS of a look that found none, unless this process has stored
        a delivery since (the embedded worker's intake): events become due by arriving, or with time
        (a retry's backoff, a lost lease), so the next look at the poll interval finds them, as an idle
        worker's poll does. Before, every pass looked: on PostgreSQL an empty claim of events for every
        message sent, about a tenth of a busy worker's CPU (docs/performance.md).
        """
        idle = self._events_idle
        return (
            idle is None or arrivals != idle[1] or now >= idle[0] + timedelta(seconds=self.settings.worker.poll_seconds)
        )

    def drain(self, threads: int | None = None) -> int:
        """`run_once` on several threads, so sends overlap; returns items handled."""
        threads = threads or self.settings.worker.concurrency
        if threads <= 1:
            return self.run_once()
        counts: list[int] = []
        died: list[BaseException] = []

        def run() -> None:
            try:
                counts.append(self.run_once())
            except BaseException as exc:  # not swallowed: re-raised below, in the caller's thread
                died.append(exc)

        pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if died:
            raise died[0]
        return sum(counts)

    def run_forever(self) -> None:
        """Poll until `stop()`; finishes the item in hand before returning (SIGTERM on Heroku)."""
        threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"worker-{i}", daemon=True)
            for i in range(self.settings.worker.concurrency)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self) -> None:
        self.stop_event.set()
        self.svc.wake.set()

    def _loop(self, index: int = 0) -> None:
        while not self.stop_event.is_set():
            if self.admit is not None and not self.admit(index):
                self.stop_event.wait(ADMIT_RECHECK_SECONDS)
                continue
            self.upkeep()
            try:
                handled = self.pass_once(index)
            except SQLAlchemyError as exc:  # connection lost, pool exhausted, server restarting
                log.warning("database unavailable; the worker will retry: %s", _reason(exc))
                handled = 0
                self.stop_event.wait(min(5.0, self.settings.worker.poll_seconds * 5))
            except Exception as exc:  # a bug: report it, but never let a worker thread die silently
                log.error("worker loop crashed (a bug); continuing: %s", _reason(exc), exc_info=exc)
                report_exception(exc)
                handled = 0
                self.stop_event.wait(min(5.0, self.settings.worker.poll_seconds * 5))
            if handled == 0:
                self.svc.wake.wait(self.settings.worker.poll_seconds)
                self.svc.wake.clear()

    # -- upkeep ---------------------------------------------------------------------------------------
    def upkeep(self, force: bool = False) -> bool:
        """Run the periodic tasks if due (or `force`) and no other thread of this worker is; returns whether it ran.

        Each task is idempotent, so twin worker processes doing the same pass change nothing twice.
        """
        if not force and time.monotonic() < self._next_upkeep:
            return False
        if not self._upkeep_lock.acquire(blocking=False):
            return False
        try:
            self._next_upkeep = time.monotonic() + self.settings.worker.upkeep_seconds
            tasks: tuple[tuple[str, Callable[[], object]], ...] = (
                ("retention sweep", self._erase_expired),
                ("settlement look-ups", lambda: settlement.settle_pending(self.svc)),
            )
            for name, task in tasks:
                try:
                    task()
                except SQLAlchemyError as exc:
                    log.warning("%s skipped, the database is unavailable: %s", name, _reason(exc))
                except Exception as exc:  # a bug: reported, and the other tasks still run
                    log.error("%s crashed (a bug): %s", name, _reason(exc), exc_info=exc)
                    report_exception(exc)
            return True
        finally:
            self._upkeep_lock.release()

    def _erase_expired(self) -> int:
        return privacy.erase_expired(self.svc.db, self.svc.clock.now(), self.settings.privacy.pii_retention_days)

    # -- events ---------------------------------------------------------------------------------
    def process_events(self, index: int = 0) -> int:
        """Claim and process a batch of due events; returns how many were claimed."""
        now, arrivals = self.svc.clock.now(), self.svc.arrivals
        with self.svc.db.session() as s:
            claims = claim(s, Event, now=now, lease_seconds=self.settings.worker.lease_seconds, limit=self.batch_size)
        self._events_idle = None if claims else (now, arrivals)
        for i, c in enumerate(claims):
            if self.stop_event.is_set():
                break  # unprocessed claims are retaken when their lease runs out
            if i and self.admit is not None and not self.admit(index):
                self._release(claims[i:])  # held back: the rest go to whichever thread may work now
                break
            self._process_event(c)
        return len(claims)

    def _release(self, claims: list[Claim]) -> None:
        """Hand claimed, untouched events back at once (as if never claimed), rather than after the lease."""
        with self.svc.db.session() as s:
            for c in claims:
                finish(s, Event, c, status=EventStatus.PENDING, attempts=Event.attempts - 1)
        self._events_idle = None  # due again at once: the next thread let through takes them

    def _process_event(self, c: Claim) -> None:
        now = self.svc.clock.now()
        context: dict[str, Any] = {}
        try:
            with self.svc.db.reading() as s:
                row = s.get(Event, c.id)
                assert row is not None  # claimed rows are never deleted
                context = {"event_id": row.event_id, "event_type": row.type, "provider": row.provider}
                stored = inbox.stored_event(row)
            # Translating may call the provider's API (thin or unconfirmed payloads): outside any
            # transaction, so no database lock is held while waiting on the network.
            provider = self.svc.providers.get(stored.provider)
            events = provider.translate(stored) if provider is not None else None
            with self.svc.db.session() as s:
                if events is None:
                    status, note = EventStatus.IGNORED, f"no handler for {stored.type}"
                else:
                    ctx = handlers.Context(
                        provider=stored.provider,
                        settings=self.settings,
                        now=now,
                        cadence=self.cadence,
                        event_row_id=c.id,
                    )
                    for event in events:
                        handlers.apply(s, event, ctx)
                    status, note = EventStatus.DONE, None
                if not finish(s, Event, c, status=status, processed_at=now, last_error=note):
                    s.rollback()  # our lease ran out and another worker owns the event now
                    log.warning("lease lost; leaving the event to its new owner", extra=context)
                    return
            log.info("event %s", status, extra=context)
        except Exception as exc:  # classified below; never lost, never silent
            self._event_failed(c, exc, context)

    def _event_failed(self, c: Claim, exc: Exception, context: dict[str, Any]) -> None:
        if isinstance(exc, ConfigurationNeeded) and c.attempts < self.settings.worker.max_attempts:
            # Translating read the provider's API and the credentials were refused (or are not set):
            # an operator must act, so the event waits for them instead of failing as a bug.
            reason = _reason(exc)
            log.error("event waits until an operator acts: %s", reason, extra=context)
            report_exception(exc)
            run_at = self.svc.clock.now() + timedelta(seconds=exc.hold_seconds)
            with self.svc.db.session() as s:
                finish(s, Event, c, status=EventStatus.PENDING, run_at=run_at, last_error=reason)
            return
        values = self._retry_or_stop(c, exc, "event", context)
        if values["status"] == EventStatus.FAILED:
            values["processed_at"] = self.svc.clock.now()
        with self.svc.db.session() as s:
            finish(s, Event, c, **values)

    def _retry_or_stop(self, c: Claim, exc: Exception, what: str, context: dict[str, Any]) -> dict[str, Any]:
        """The outcome of a failed attempt: retry later (transient, attempts left) or stop as failed."""
        reason = _reason(exc)
        transient = isinstance(exc, (TransientError, *TRANSIENT_DB_ERRORS))
        if transient and c.attempts < self.settings.worker.max_attempts:
            delay = getattr(exc, "retry_after", None) or backoff_seconds(
                c.attempts, self.settings.worker.retry_base_seconds, self.settings.worker.retry_max_seconds
            )
            log.warning("%s will be retried in %.0fs: %s", what, delay, reason, extra=context)
            return dict(
                status=EventStatus.PENDING, run_at=self.svc.clock.now() + timedelta(seconds=delay), last_error=reason
            )
        if transient or isinstance(exc, (PermanentError, ConfigurationNeeded)):
            log.error("%s failed: %s", what, reason, extra=context)
        else:
            log.error("%s crashed (a bug): %s", what, reason, exc_info=exc, extra=context)
            report_exception(exc)
        return dict(status=EventStatus.FAILED, last_error=reason)

    # -- notifications --------------------------------------------------------------------------
    def send_notifications(self, limit: int = 1) -> int:
        """Claim and send up to `limit` due messages (each a customer's batch); returns how many."""
        sent = 0
        for _ in range(limit):
            batch = claim_next(
                self.svc.db,
                now=self.svc.clock.now(),
                lease_seconds=self.settings.worker.lease_seconds,
                group_window=self.cadence.group_window,
            )
            if batch is None:
                break
            with self._lock:
                self.claim_tokens.add(batch.claim.token)
            self._send(batch)
            sent += 1
        return sent

    def _send(self, batch: Batch) -> None:
        context = {"notification_id": batch.claim.id}
        try:
            outcome = sending.send_notification(self.svc, batch)
            with self._lock:
                self.sent_ids.extend(outcome.notification_ids)
        except Exception as exc:
            self._send_failed(batch.claim, exc, context)

    # -- team alerts ----------------------------------------------------------------------------------
    def send_alerts(self, limit: int = 1, claim_due: bool = True) -> int:
        """Queue the daily digest when due, then claim and send up to `limit` due team alerts
        (none when `claim_due` is False: the caller has read that none is due)."""
        if not self.svc.alerters:
            return 0
        now = self.svc.clock.now()
        if self._digest_checked is None or now - self._digest_checked >= timedelta(minutes=1):
            self._digest_checked = now
            with self.svc.db.session() as s:
                queued = alert_outbox.queue_digest(s, self.settings.alerts, now)
            claim_due = claim_due or bool(queued)
        if not claim_due:
            return 0
        sent = 0
        for _ in range(limit):
            with self.svc.db.session() as s:
                claimed = alert_outbox.claim_alert(s, now, self.settings.worker.lease_seconds)
            if claimed is None:
                break
            self._send_alert(claimed)
            sent += 1
        return sent

    def _send_alert(self, claimed: Claim) -> None:
        context = {"alert_id": claimed.id}
        try:
            with self.svc.db.session() as s:
                row = s.get(TeamAlert, claimed.id)
                assert row is not None
                alert = alert_outbox.build_alert(s, row, dashboard_links(self.svc.providers))
                channel = row.channel
            alerter = self.svc.alerters.get(channel)
            if alerter is None:
                raise ConfigurationNeeded(f"the {channel} alert channel is no longer configured")
            alerter.send(alert, f"webhook-app-alert-{claimed.id}")
            with self.svc.db.session() as s:
                alert_outbox.finish_sent(s, claimed, self.svc.clock.now())
            log.info("team alert sent (%s, %s)", alert.kind.value, channel, extra=context)
        except Exception as exc:
            self._finish_failed(TeamAlert, claimed, exc, context)

    def _send_failed(self, c: Claim, exc: Exception, context: dict[str, Any]) -> None:
        values = self._finish_failed(Notification, c, exc, context)
        if values["status"] == NotificationStatus.FAILED and isinstance(exc, ResourceMissing):
            sending.mark_case_error(self.svc, c, exc)

    def _finish_failed(self, model: Any, c: Claim, exc: Exception, context: dict[str, Any]) -> dict[str, Any]:
        """Hold (an operator must act), retry later, or stop an outbox row whose send failed."""
        what = "team alert" if model is TeamAlert else "notification"
        if isinstance(exc, ConfigurationNeeded):
            reason = _reason(exc)
            values: dict[str, Any] = dict(
                status=NotificationStatus.HELD,
                run_at=self.svc.clock.now() + timedelta(seconds=exc.hold_seconds),
                last_error=reason,
            )
            log.error("%s held until an operator acts: %s", what, reason, extra=context)
            report_exception(exc)
        else:
            values = self._retry_or_stop(c, exc, what, context)
        with self.svc.db.session() as s:
            finish(s, model, c, **values)
        return values


def _reason(exc: Exception) -> str:
    """A storable, loggable reason: no SQL parameters (they may hold emails), secrets masked."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig).splitlines()[0] if str(exc.orig) else ""
        name = exc.orig.__class__.__name__
    else:
        text = str(exc)
        # A missing object is named by what is missing ("InvoiceMissing", "SubscriptionMissing").
        name = exc.name if isinstance(exc, ResourceMissing) else exc.__class__.__name__
    return scrub(f"{name}: {text}" if text else name)[:2000]
