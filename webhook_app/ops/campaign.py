"""`webhook-app campaign`: one recovery message to every customer with unpaid, failed invoices.

The webhook flow messages customers as their payments fail; the campaign reaches the ones already
unpaid, e.g. when the app is first installed or after a long outage. It:

- pages through every invoice each enabled billing provider is still collecting (Stripe: open,
  charged automatically, 100 a page) and keeps those already attempted;
- groups them by customer and skips customers messaged within the cooldown (by an earlier campaign or
  by the dunning worker) or with a message already scheduled;
- opens a dunning case per invoice and puts one message per invoice into the notifications outbox,
  the same outbox the webhook flow uses. The worker then sends them exactly as it sends every
  message: re-reading each invoice first (someone who paid meanwhile is not messaged), grouping a
  customer's invoices into one message, honouring quiet hours, templates, idempotency keys, error
  classification and the email tool's rate limit;
- drains the outbox in this process (`--concurrency` sending threads) from the moment the first
  customers are queued, while a thread queues the rest, and reports what happened.
  A run stopped midway is resumable: what it queued stays in the outbox for any worker, and a rerun
  skips customers whose message is scheduled or sent.
`--dry-run` and `--csv` are reports over the same selection: nothing is queued or sent.
"""

from __future__ import annotations

import csv
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from webhook_app import dunning, tokens
from webhook_app.declines import DeclineClass
from webhook_app.domain import InvoiceView
from webhook_app.errors import ConfigurationNeeded, RecoveryError, ResourceMissing
from webhook_app.models import DunningCase, Notification
from webhook_app.money import format_amount, to_decimal
from webhook_app.ops.progress import Progress
from webhook_app.ops.queueing import BackgroundQueue
from webhook_app.providers.base import Provider
from webhook_app.sending import link_target
from webhook_app.services import Services
from webhook_app.states import NOTIFICATION_UNSENT, CaseStatus, NotificationKind, NotificationStatus
from webhook_app.worker import Worker

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN = timedelta(days=3)
# Customers queued before sending starts: enough to keep the sending threads busy while the queueing
# thread gets going, few enough that sending starts within a second.
FIRST_CHUNK = 50
CSV_COLUMNS = ("customer_id", "invoice_id", "update_url", "amount_due", "currency")
# Error kinds of the summary, from the name the worker stored with a failed notification (any
# "<Kind>Missing" is resource_missing).
ERROR_KINDS = {
    "MessengerRejected": "messenger rejected",
    "BadPayload": "rejected",
    "PermanentError": "rejected",
    "TransientError": "gave up after retries",
}


@dataclass(frozen=True)
class CampaignOptions:
    """How the campaign runs. Rates are requests per second for this process (None: the default)."""

    provider: str | None = None  # None: every enabled billing provider
    dry_run: bool = False
    csv_path: str | None = None
    limit: int | None = None
    cooldown: timedelta = DEFAULT_COOLDOWN
    concurrency: int = 8
    stripe_rate: float | None = None
    messenger_rate: float | None = None
    progress_interval: float = 10.0


@dataclass
class Target:
    """A customer to message and their unpaid invoices (newest first, as the provider lists them)."""

    provider: str
    customer_id: str
    invoices: list[InvoiceView]
    notification_ids: list[int] = field(default_factory=list)


@dataclass
class CampaignReport:
    """What a run did, for the summary and for tests."""

    run_id: str
    mode: str  # send | dry-run | csv
    listed: int = 0
    customers: int = 0
    targets: int = 0
    queued: int = 0  # messages put in the outbox (one per invoice; a customer's go out as one)
    sent: int = 0  # customers messaged
    already_sent: int = 0  # of which the email tool already had the message (a retried send)
    deferred: int = 0  # customers whose message waits for the end of their quiet hours
    retrying: int = 0  # customers whose message the worker retries later (a provider was down)
    held: int = 0  # customers whose message waits for an operator (credentials, configuration)
    outbox_sent: int = 0  # messages queued before this run (an interrupted run, the worker) it sent too
    csv_rows: int = 0
    excluded: Counter[str] = field(default_factory=Counter)  # invoices, by reason
    skipped: Counter[str] = field(default_factory=Counter)  # customers, by reason
    errors: Counter[str] = field(default_factory=Counter)  # customers, by kind
    error_samples: list[str] = field(default_factory=list)
    stopped: str | None = None
    throttled: int = 0
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def error(self, kind: str, customer_id: str, detail: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{customer_id}: {detail}")

    def progress_text(self) -> str:
        skipped, errors = sum(self.skipped.values()), sum(self.errors.values())
        return f"sent={self.sent} skipped={skipped} errors={errors}"

    def summary(self) -> list[str]:
        """Human lines for the end of the run."""
        verb = {"send": "sent", "dry-run": "would send", "csv": "links written"}[self.mode]
        lines = [
            f"campaign {self.mode} finished in {self.elapsed:.1f}s (run {self.run_id[:8]})",
            f"  unpaid invoices listed: {self.listed}, for {self.customers} customer(s) with failed payments",
        ]
        if self.excluded:
            lines.append("  invoices left out: " + ", ".join(f"{r} {n}" for r, n in sorted(self.excluded.items())))
        if self.mode == "send":
            lines.append(
                f"  {verb}: {self.sent}"
                + (f" (+{self.already_sent} the email tool already had)" if self.already_sent else "")
            )
            if self.outbox_sent:
                lines.append(f"  also sent from the outbox (queued earlier): {self.outbox_sent} invoice notice(s)")
            waiting = [
                (self.deferred, "waiting for the customer's quiet hours to end"),
                (self.retrying, "to be retried by the worker"),
                (self.held, "held until an operator acts"),
            ]
            for count, why in waiting:
                if count:
                    lines.append(f"  queued, {why}: {count} (in the outbox; the worker sends them)")
        elif self.mode == "csv":
            lines.append(f"  {verb}: {self.csv_rows} row(s) for {self.targets} customer(s); nothing was sent")
        else:
            lines.append(f"  {verb}: {self.targets} message(s); nothing was sent")
        if self.skipped:
            lines.append("  customers skipped: " + ", ".join(f"{r} {n}" for r, n in sorted(self.skipped.items())))
        total_errors = sum(self.errors.values())
        lines.append(
            f"  errors: {total_errors}"
            + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(self.errors.items())) + ")" if total_errors else "")
        )
        lines.extend(f"    {sample}" for sample in self.error_samples)
        if total_errors > len(self.error_samples):
            lines.append(f"    ... and {total_errors - len(self.error_samples)} more in the logs")
        if self.throttled:
            lines.append(f"  rate limits absorbed: {self.throttled} request(s) waited for the provider")
        if self.stopped:
            lines.append(f"  STOPPED: {self.stopped}")
        return lines


def eligible_reason(invoice: InvoiceView) -> str | None:
    """Why an unpaid invoice is left out of the campaign, or None when it belongs in it."""
    if invoice.status != "open":
        return "not open"
    if not invoice.auto_collected:
        return "sent for manual payment"
    if invoice.attempt_count < 1:
        return "not attempted yet"  # no payment has failed: nothing to recover
    if invoice.remaining <= 0:
        return "nothing left to pay"
    return None


def mask_email(email: str | None) -> str:
    """`a***@example.com`: enough for an operator to recognise, not to harvest."""
    if not email or "@" not in email:
        return "(no email)"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _amounts(invoices: list[InvoiceView]) -> str:
    totals: dict[str, int] = {}
    for inv in invoices:
        totals[inv.currency] = totals.get(inv.currency, 0) + inv.remaining
    return " + ".join(format_amount(amount, currency) for currency, amount in totals.items())


# -- the database side --------------------------------------------------------------------------------


def case_exclusions(session: Session, provider: str, invoice_ids: list[str]) -> dict[str, str]:
    """Invoices whose dunning case says not to chase them now."""
    reasons: dict[str, str] = {}
    for start in range(0, len(invoice_ids), 500):
        chunk = invoice_ids[start : start + 500]
        rows = session.execute(
            select(DunningCase.invoice_id, DunningCase.status, DunningCase.decline_class).where(
                DunningCase.provider == provider, DunningCase.invoice_id.in_(chunk)
            )
        )
        for invoice_id, status, decline_class in rows:
            if decline_class == DeclineClass.DO_NOT_CONTACT:
                reasons[invoice_id] = "not to be contacted (the decline is a fraud or authorization signal)"
            elif status == CaseStatus.PAUSED:
                reasons[invoice_id] = "payment method updated, awaiting the provider's retry"
            elif status != CaseStatus.OPEN:
                reasons[invoice_id] = f"case {status} in webhook_app"
    return reasons


def recently_messaged(
    session: Session, provider: str, now: datetime, cooldown: timedelta, customer_id: str | None = None
) -> dict[str, str]:
    """Customers not to message now, with why: messaged within the cooldown, or a message scheduled."""
    query = (
        select(DunningCase.customer_id, Notification.status)
        .join(Notification, Notification.case_id == DunningCase.id)
        .where(
            DunningCase.provider == provider,
            or_(
                (Notification.status == NotificationStatus.SENT) & (Notification.sent_at > now - cooldown),
                Notification.status.in_(NOTIFICATION_UNSENT),
            ),
        )
    )
    if customer_id:
        query = query.where(DunningCase.customer_id == customer_id)
    reasons: dict[str, str] = {}
    for cid, status in session.execute(query):
        if reasons.get(cid) != "message scheduled":
            reasons[cid] = "message scheduled" if status != NotificationStatus.SENT else "cooldown (message sent)"
    return reasons


def enqueue(session: Session, target: Target, now: datetime, cooldown: timedelta) -> str | list[int]:
    """Open the customer's cases and put one message per invoice in the outbox, in one transaction.

    Returns the new notification ids, or why the customer is skipped. The cases are locked first (in
    invoice order, so two runs never deadlock) and the cooldown is checked again under the lock: of two
    campaigns running at once, the second sees the first's messages and skips the customer.
    """
    cases = [dunning.open_case(session, inv, now) for inv in sorted(target.invoices, key=lambda inv: inv.id)]
    busy = recently_messaged(session, target.provider, now, cooldown, target.customer_id).get(target.customer_id)
    if busy:
        return busy
    cases = [case for case in cases if case.status == CaseStatus.OPEN]
    if not cases:
        return "cases closed meanwhile"
    ids = []
    for case in cases:
        step = 0
        if session.scalar(select(func.count(Notification.id)).where(Notification.case_id == case.id)):
            # Messaged before (its sequence is over and the cooldown has passed): a reminder, in an
            # episode of its own so the outbox's one-message-per-step rule still holds.
            case.episode += 1
            step = 1
        case.updated_at = now
        dunning.schedule(session, case, [(step, now)], NotificationKind.PAYMENT_FAILED, now)
        ids.append(
            session.scalar(
                select(Notification.id).where(
                    Notification.case_id == case.id, Notification.episode == case.episode, Notification.step == step
                )
            )
        )
    return [i for i in ids if i is not None]


# -- the run ------------------------------------------------------------------------------------------


class Campaign:
    """One run; `run()` returns the report. Build with the app's services and the options."""

    def __init__(
        self,
        svc: Services,
        options: CampaignOptions,
        *,
        echo: Callable[[str], None] = print,
        progress_stream: TextIO | None = None,
        tty: bool | None = None,
    ):
        if options.dry_run and options.csv_path:
            raise ValueError("--dry-run and --csv are alternatives: pick one")
        self.svc = svc
        self.options = options
        self.echo = echo
        self.progress_stream = progress_stream
        self.tty = tty
        mode = "dry-run" if options.dry_run else "csv" if options.csv_path else "send"
        self.report = CampaignReport(run_id=str(uuid.uuid4()), mode=mode)
        self.providers = self._providers()
        self._apply_rates()

    def _providers(self) -> list[Provider]:
        if self.options.provider:
            provider = self.svc.providers.get(self.options.provider)
            if provider is None:
                raise ConfigurationNeeded(f"no billing provider called {self.options.provider!r}")
            chosen = [provider]
        else:
            chosen = [p for p in self.svc.providers.values() if p.billing is not None]
        for provider in chosen:
            if provider.billing is None:
                missing = ", ".join(provider.missing_for_sending())
                raise ConfigurationNeeded(f"{missing} is not set: the campaign reads {provider.label}'s invoices")
        if not chosen:
            raise ConfigurationNeeded("no billing provider is set up (e.g. STRIPE_SECRET_KEY)")
        return chosen

    def _apply_rates(self) -> None:
        """--stripe-rate / --messenger-rate set this process's limits (each adapter owns its limiter)."""
        if self.options.stripe_rate:
            stripe = self.svc.providers.get("stripe")
            api = getattr(getattr(stripe, "billing", None), "api", None)
            if api is not None:
                api.pacer.bucket.set_rate(self.options.stripe_rate)
        bucket = getattr(self.svc.messenger, "bucket", None)
        if self.options.messenger_rate and bucket is not None:
            bucket.set_rate(self.options.messenger_rate)

    def _throttled(self) -> int:
        """429s absorbed so far by the billing providers' and the email tool's limiters."""
        buckets = [getattr(self.svc.messenger, "bucket", None)]
        for provider in self.providers:
            pacer = getattr(getattr(provider.billing, "api", None), "pacer", None)
            # Stripe's limiter sits in its SDK wrapper's pacer; Chargebee's billing port exposes its bucket.
            buckets.append(getattr(pacer, "bucket", None) or getattr(provider.billing, "bucket", None))
        return sum(getattr(bucket, "pauses", 0) for bucket in buckets)

    def _progress(self, label: str, total: int | None, unit: str) -> Progress:
        return Progress(
            label,
            total,
            self.progress_stream or sys.stderr,
            tty=self.tty,
            interval=self.options.progress_interval,
            unit=unit,
            postfix=self.report.progress_text if total is not None else None,
        )

    def run(self) -> CampaignReport:
        """List, select, then queue and send (or print, or write the CSV)."""
        started = time.monotonic()
        throttled_before = self._throttled()
        try:
            targets = self.select(self.collect())
            if self.report.mode == "dry-run":
                for target in targets:
                    self._print_plan(target)
            elif self.report.mode == "csv":
                self._write_csv(targets)
            else:
                self._send(targets)
        finally:
            self.report.throttled = self._throttled() - throttled_before
            self.report.elapsed = time.monotonic() - started
        return self.report

    # 1. every unpaid invoice, grouped by customer
    def collect(self) -> dict[tuple[str, str], list[InvoiceView]]:
        """All eligible unpaid invoices by (provider, customer), in the providers' listing order."""
        by_customer: dict[tuple[str, str], list[InvoiceView]] = {}
        for provider in self.providers:
            assert provider.billing is not None  # checked by _providers
            listed: list[InvoiceView] = []
            with self._progress(f"listing {provider.label} invoices", None, "invoice") as progress:
                for inv in provider.billing.list_unpaid_invoices():
                    listed.append(inv)
                    progress.advance()
            self.report.listed += len(listed)
            with self.svc.db.session() as s:
                case_reasons = case_exclusions(s, provider.name, [inv.id for inv in listed])
            for inv in listed:
                reason = eligible_reason(inv) or case_reasons.get(inv.id)
                if reason:
                    self.report.excluded[reason] += 1
                    continue
                by_customer.setdefault((provider.name, inv.customer_id), []).append(inv)
        self.report.customers = len(by_customer)
        return by_customer

    # 2. who is due a message
    def select(self, by_customer: dict[tuple[str, str], list[InvoiceView]]) -> list[Target]:
        """The customers not messaged within the cooldown, at most `limit` of them."""
        now = self.svc.clock.now()
        with self.svc.db.session() as s:
            recent = {p.name: recently_messaged(s, p.name, now, self.options.cooldown) for p in self.providers}
        targets = []
        for (provider, customer_id), invoices in by_customer.items():
            reason = recent[provider].get(customer_id)
            if reason:
                self.report.skip(reason)
                continue
            targets.append(Target(provider, customer_id, invoices))
        if self.options.limit is not None and len(targets) > self.options.limit:
            self.report.skipped["over --limit"] += len(targets) - self.options.limit
            targets = targets[: self.options.limit]
        self.report.targets = len(targets)
        return targets

    def _print_plan(self, target: Target) -> None:
        first = target.invoices[0]
        email = next((inv.customer_email for inv in target.invoices if inv.customer_email), None)
        ids = ", ".join(inv.id for inv in target.invoices)
        self.echo(
            f"would message {target.customer_id} ({mask_email(email)}): {len(target.invoices)} invoice(s), "
            f"{_amounts(target.invoices)} [{ids}]"
            + ("" if email else "  <- no email: would fail")
            + (f"  (newest: {first.number})" if first.number else "")
        )

    # 3. queue, and let the worker send what is queued meanwhile
    def _send(self, targets: list[Target]) -> None:
        queue = BackgroundQueue(targets, self._enqueue)
        # Sending starts as soon as the first customers are queued, and the rest are queued meanwhile:
        # opening 5,000 customers' cases takes about a minute, in which the providers' limits would
        # otherwise go unused. Queueing (~100 customers/s) stays well ahead of sending (a few a second
        # under Stripe's limit), so the sending threads rarely find nothing due.
        queue.put(FIRST_CHUNK)
        queue.start()
        try:
            # Drained even when this run queues nothing: what an earlier, interrupted run left in the
            # outbox (once its claims' leases have passed) goes out now too, through the same worker code.
            self._drain(queue)
        except BaseException:
            queue.stop()  # interrupted (Ctrl-C): queue no more; what is queued stays for the worker
            raise
        queue.finish()
        self._tally(queue.queued())

    def _enqueue(self, target: Target) -> bool:
        """Open one customer's cases and queue their messages (one transaction); False if skipped."""
        with self.svc.db.session() as s:
            outcome = enqueue(s, target, self.svc.clock.now(), self.options.cooldown)
        if isinstance(outcome, str):
            self.report.skip(outcome)
            return False
        target.notification_ids = outcome
        self.report.queued += len(outcome)
        return True

    def _drain(self, queue: BackgroundQueue[Target]) -> None:
        """Run the worker's sending loop here until nothing is due and everything is queued, showing
        progress per customer.

        Another worker (or campaign) may be sending some of this run's messages: the run waits for
        those to finish (at most a lease) so its report says how they ended.
        """
        worker = Worker(self.svc)

        ended = [True]  # whether the latest drain pass ran to its end

        def drain() -> None:
            ended[0] = False
            worker.drain(threads=self.options.concurrency)
            ended[0] = True

        def start_drain() -> threading.Thread:
            thread = threading.Thread(target=drain, name="campaign-drain", daemon=True)
            thread.start()
            return thread

        deadline: float | None = None
        with self._progress("campaign", queue.planned, "customer") as progress:
            draining = start_drain()
            done = 0
            while True:
                # Each look reads the status of every queued message (5,000 rows for 5,000 customers):
                # once a second, not five times, leaves the CPU to the sending and queueing threads.
                draining.join(timeout=1.0)
                targets = queue.queued()
                statuses = self._statuses(targets)
                finished = self._finished(targets, statuses)
                self.report.sent = finished  # shown in the progress line
                if finished + queue.skipped > done:
                    progress.advance(finished + queue.skipped - done)
                    done = finished + queue.skipped
                if draining.is_alive():
                    continue
                # A pass that did not end (its threads died with an error the worker does not catch, as
                # on a crash) leaves its claims to their lease: going again would only repeat it.
                if queue.busy():
                    # The pass caught up with the queue (a pass ends when nothing is due): go on with
                    # what is queued next; after a crash, only let the queueing finish.
                    if ended[0]:
                        draining = start_drain()
                    else:
                        queue.wait(1.0)
                    continue
                deadline = deadline or time.monotonic() + self.svc.settings.worker.lease_seconds
                state = self._unsettled(targets, worker)
                if state is None or not ended[0] or time.monotonic() > deadline:
                    break
                if state == "due":  # handed back to the outbox meanwhile (e.g. by another sender): go again
                    draining = start_drain()
        own = {i for target in queue.queued() for i in target.notification_ids}
        self.report.outbox_sent = len(set(worker.sent_ids) - own)

    def _statuses(self, targets: Iterable[Target]) -> dict[int, tuple[str, str]]:
        """(status, last error) of every message the run queued."""
        ids = [i for target in targets for i in target.notification_ids]
        rows: dict[int, tuple[str, str]] = {}
        with self.svc.db.session() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(Notification.id, Notification.status, Notification.last_error)
                for nid, status, error in s.execute(query.where(Notification.id.in_(chunk))):
                    rows[nid] = (status, error or "")
        return rows

    def _unsettled(self, targets: list[Target], worker: Worker) -> str | None:
        """Whether some of this run's messages are still in play: "sending" (another process has them
        now), "due" (back in the outbox and due now), or None (each is sent, failed, held or waits)."""
        ids = [i for target in targets for i in target.notification_ids]
        now = self.svc.clock.now()
        due = False
        with self.svc.db.session() as s:
            for start in range(0, len(ids), 500):
                rows = s.execute(
                    select(Notification.status, Notification.claim_token, Notification.run_at).where(
                        Notification.id.in_(ids[start : start + 500]),
                        Notification.status.in_((NotificationStatus.SENDING, NotificationStatus.PENDING)),
                    )
                )
                for status, token, run_at in rows:
                    if status == NotificationStatus.SENDING and token not in worker.claim_tokens:
                        return "sending"
                    due = due or (status == NotificationStatus.PENDING and run_at <= now)
        return "due" if due else None

    def _finished(self, targets: list[Target], statuses: dict[int, tuple[str, str]]) -> int:
        """Customers none of whose messages is still waiting to be sent now."""
        in_hand = (NotificationStatus.PENDING, NotificationStatus.SENDING)
        return sum(all(statuses.get(i, ("", ""))[0] not in in_hand for i in t.notification_ids) for t in targets)

    def _tally(self, targets: list[Target]) -> None:
        """Each customer's outcome, from their messages' final states in the outbox.

        One category per customer: sent, then failed, held, waiting for quiet hours, retrying, skipped.
        """
        statuses = self._statuses(targets)
        self.report.sent = 0
        for target in targets:
            states = [statuses.get(i, ("", "")) for i in target.notification_ids]
            kinds = {status for status, _ in states}
            errors = {status: error for status, error in states}
            if NotificationStatus.SENT in kinds:
                self.report.sent += 1
                if errors[NotificationStatus.SENT].startswith("the email tool had already"):
                    self.report.already_sent += 1
            elif NotificationStatus.FAILED in kinds:
                error = errors[NotificationStatus.FAILED]
                name = error.split(":", 1)[0]
                kind = "resource_missing" if name.endswith("Missing") else ERROR_KINDS.get(name, "error")
                self.report.error(kind, target.customer_id, error)
            elif NotificationStatus.HELD in kinds:
                self.report.held += 1
                self.report.stopped = self.report.stopped or errors[NotificationStatus.HELD]
            elif any(error.startswith("quiet hours") for _, error in states):
                self.report.deferred += 1
            elif kinds & {NotificationStatus.PENDING, NotificationStatus.SENDING}:
                self.report.retrying += 1
            elif any("invoice already" in error for _, error in states):
                self.report.skip("paid meanwhile")
            else:
                self.report.skip("nothing left to send")

    # CSV instead of sending
    def _write_csv(self, targets: list[Target]) -> None:
        use_links = bool(self.svc.settings.links.public_url)
        assert self.options.csv_path is not None

        def rows_for(target: Target) -> list[tuple[str, str, str, str, str]]:
            now = self.svc.clock.now()
            try:
                if use_links:
                    with self.svc.db.session() as s:
                        cases = [dunning.open_case(s, inv, now) for inv in target.invoices]
                        s.flush()
                        case_id = next((c.id for c in cases if c.status == CaseStatus.OPEN), cases[0].id)
                    url = tokens.recovery_url(self.svc.settings.links, case_id, None, now)
                else:
                    with self.svc.db.session() as s:
                        case = dunning.open_case(s, target.invoices[0], now)
                        s.expunge(case)
                    link = self.svc.billing(target.provider).update_link(link_target(case), for_email=True)
                    if link is None:
                        raise ConfigurationNeeded(f"PUBLIC_URL is not set: {target.provider} links need it")
                    url = link.url
            except ConfigurationNeeded as exc:
                self.report.stopped = str(exc)
                self.report.error("configuration", target.customer_id, str(exc))
                return []
            except RecoveryError as exc:
                kind = "resource_missing" if isinstance(exc, ResourceMissing) else "error"
                self.report.error(kind, target.customer_id, str(exc))
                return []
            return [
                (target.customer_id, inv.id, url, str(to_decimal(inv.remaining, inv.currency)), inv.currency)
                for inv in target.invoices
            ]

        with open(self.options.csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            workers = max(1, self.options.concurrency)
            with (
                self._progress("campaign csv", len(targets), "customer") as progress,
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="campaign") as pool,
            ):
                # Written by this thread as results arrive, in order: a crash keeps every finished row.
                for rows in pool.map(rows_for, targets):
                    writer.writerows(rows)
                    self.report.csv_rows += len(rows)
                    progress.advance()


def run_campaign(svc: Services, options: CampaignOptions, **kwargs: object) -> CampaignReport:
    """Run one campaign with `options` (see `Campaign`)."""
    return Campaign(svc, options, **kwargs).run()  # type: ignore[arg-type]
