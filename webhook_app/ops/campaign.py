"""`webhook-app campaign`: one recovery message to every customer with open, failed invoices.

The webhook flow messages customers as their payments fail; the campaign reaches the ones already
unpaid, e.g. when the app is first installed or after a long outage. It:

- pages through *all* open invoices Stripe collects automatically (`status=open`,
  `collection_method=charge_automatically`, 100 a page) and keeps those already attempted;
- groups them by customer: one message per customer, naming every unpaid invoice;
- skips customers messaged within the cooldown (by an earlier campaign run or by the dunning worker)
  and customers the worker is about to message anyway;
- at send time re-lists the customer's open invoices (one may have been paid since the listing) and
  makes the link then: a durable `/r/<token>` link when PUBLIC_URL is set, else a fresh portal session;
- remembers each customer in `campaign_contacts` before sending (resumable: a rerun, or a run after a
  crash, never double-sends; a send cut short is retried with the same idempotency key);
- calls Stripe and the email tool from several threads under token buckets (Stripe 20 req/s in test
  mode, 80 live, below its 25/100 limits; the messenger ~10 req/s), backing off on 429s;
- counts per-customer errors (a deleted customer, a rejected email) and carries on; only a missing
  setting, which every customer would hit, stops the run.
"""

from __future__ import annotations

import csv
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from webhook_app import dunning, links
from webhook_app.adapters import InvoiceLine, Message
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import (
    ConfigurationNeeded,
    CustomerMissing,
    MessengerRejected,
    PermanentError,
    RecoveryError,
    TransientError,
)
from webhook_app.inbox import insert_if_absent
from webhook_app.invoices import InvoiceView, format_amount, to_decimal
from webhook_app.models import DunningCase, Notification
from webhook_app.ops.models import CampaignContact
from webhook_app.ops.pacing import Pacer
from webhook_app.ops.progress import Progress
from webhook_app.services import Services

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN = timedelta(days=3)
# Stripe allows 25 req/s in test mode and 100 live (https://docs.stripe.com/rate-limits); staying
# below leaves room for the web and worker processes sharing the same account.
STRIPE_RATE_TEST, STRIPE_RATE_LIVE = 20.0, 80.0
CSV_COLUMNS = ("customer_id", "invoice_id", "update_url", "amount_due", "currency")
WORKER_BUSY = ("pending", "held", "sending")


@dataclass(frozen=True)
class CampaignOptions:
    """How the campaign runs. Rates are requests per second; `lease` is how long a claimed customer
    stays reserved for this run (after a crash, a rerun takes them over once it has passed)."""

    dry_run: bool = False
    csv_path: str | None = None
    limit: int | None = None
    cooldown: timedelta = DEFAULT_COOLDOWN
    concurrency: int = 8
    stripe_rate: float | None = None  # None: by the key's mode
    messenger_rate: float = 10.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    lease: timedelta = timedelta(minutes=5)
    progress_interval: float = 10.0


@dataclass
class Target:
    """A customer to message and their unpaid invoices (newest first, as Stripe lists them)."""

    customer_id: str
    invoices: list[InvoiceView]


@dataclass
class CampaignReport:
    """Everything the run counted; `summary()` prints it."""

    run_id: str
    mode: str
    listed: int = 0
    excluded: Counter = field(default_factory=Counter)  # invoices left out, by reason
    customers: int = 0
    targets: int = 0
    sent: int = 0
    already_sent: int = 0  # the provider had this idempotency key: a cut-short send had got through
    csv_rows: int = 0
    skipped: Counter = field(default_factory=Counter)  # customers, by reason
    errors: Counter = field(default_factory=Counter)  # customers, by kind
    error_samples: list[str] = field(default_factory=list)
    stopped: str | None = None
    stripe_throttled: int = 0
    messenger_throttled: int = 0
    retried: int = 0
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
        return f"sent={self.sent + self.already_sent} skipped={skipped} errors={errors}"

    def summary(self) -> list[str]:
        """Human lines for the end of the run."""
        verb = {"send": "sent", "dry-run": "would send", "csv": "links written"}[self.mode]
        lines = [
            f"campaign {self.mode} finished in {self.elapsed:.1f}s (run {self.run_id[:8]})",
            f"  open invoices listed: {self.listed}, for {self.customers} customer(s) with failed payments",
        ]
        if self.excluded:
            lines.append("  invoices left out: " + ", ".join(f"{r} {n}" for r, n in sorted(self.excluded.items())))
        if self.mode == "send":
            lines.append(
                f"  {verb}: {self.sent}"
                + (f" (+{self.already_sent} the email tool already had)" if self.already_sent else "")
            )
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
        if self.stripe_throttled or self.messenger_throttled or self.retried:
            lines.append(
                f"  rate limits absorbed: Stripe {self.stripe_throttled}, messenger {self.messenger_throttled}"
                f" ({self.retried} retried call(s))"
            )
        if self.stopped:
            lines.append(f"  STOPPED: {self.stopped}")
        return lines


def eligible_reason(invoice: InvoiceView) -> str | None:
    """Why an open invoice is left out of the campaign, or None when it belongs in it."""
    if invoice.status != "open":
        return "not open"
    if invoice.collection_method not in (None, "charge_automatically"):
        return "sent for manual payment"
    if invoice.attempt_count < 1:
        return "not attempted yet"  # no payment has failed: nothing to recover
    if (invoice.amount_remaining or invoice.amount_due) <= 0:
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
        totals[inv.currency] = totals.get(inv.currency, 0) + _remaining(inv)
    return " + ".join(format_amount(amount, currency) for currency, amount in totals.items())


def _remaining(inv: InvoiceView) -> int:
    return inv.amount_remaining or inv.amount_due


def _line(inv: InvoiceView) -> InvoiceLine:
    return InvoiceLine(
        invoice_id=inv.id,
        number=inv.number,
        amount_due=_remaining(inv),
        currency=inv.currency,
        hosted_invoice_url=inv.hosted_invoice_url,
        attempt_count=inv.attempt_count,
        next_payment_attempt=inv.next_payment_attempt,
    )


def idempotency_key(customer_id: str, send_number: int) -> str:
    """The email tool's key for this customer's n-th campaign message: the same on every retry."""
    return f"webhook-app-campaign-{customer_id}-{send_number}"


# -- the database side --------------------------------------------------------------------------------


def _case_exclusions(session: Session, invoice_ids: list[str]) -> dict[str, str]:
    """Invoices whose dunning case says not to chase them now."""
    reasons: dict[str, str] = {}
    for start in range(0, len(invoice_ids), 500):
        chunk = invoice_ids[start : start + 500]
        for invoice_id, status in session.execute(
            select(DunningCase.invoice_id, DunningCase.status).where(DunningCase.invoice_id.in_(chunk))
        ):
            if status == "paused":
                reasons[invoice_id] = "payment method updated, awaiting Stripe's retry"
            elif status != "open":
                reasons[invoice_id] = f"case {status} in webhook_app"
    return reasons


def recently_messaged(
    session: Session, now: datetime, cooldown: timedelta, customer_id: str | None = None
) -> dict[str, str]:
    """Customers not to message now, with why: messaged within the cooldown (campaign or worker),
    a dunning message already scheduled, or claimed by a campaign run still within its lease."""
    return {
        **worker_activity(session, now, cooldown, customer_id),
        **campaign_activity(session, now, cooldown, customer_id),
    }


def campaign_activity(
    session: Session | Connection, now: datetime, cooldown: timedelta, customer_id: str | None = None
) -> dict[str, str]:
    """Customers a campaign messaged within the cooldown, or holds right now."""
    cutoff = now - cooldown
    query = select(CampaignContact.customer_id, CampaignContact.last_sent_at).where(
        or_(
            CampaignContact.last_sent_at > cutoff,
            (CampaignContact.status == "sending") & (CampaignContact.locked_until >= now),
        )
    )
    if customer_id:
        query = query.where(CampaignContact.customer_id == customer_id)
    return {
        cid: "cooldown (campaign message)"
        if last_sent_at is not None and last_sent_at > cutoff
        else "claimed by another run (retried after its lease)"
        for cid, last_sent_at in session.execute(query)
    }


def worker_activity(
    session: Session | Connection, now: datetime, cooldown: timedelta, customer_id: str | None = None
) -> dict[str, str]:
    """Customers the dunning worker messaged within the cooldown, or is about to message."""
    query = (
        select(DunningCase.customer_id, Notification.status)
        .join(Notification, Notification.case_id == DunningCase.id)
        .where(
            or_(
                (Notification.status == "sent") & (Notification.sent_at > now - cooldown),
                Notification.status.in_(WORKER_BUSY),
            )
        )
    )
    if customer_id:
        query = query.where(DunningCase.customer_id == customer_id)
    reasons: dict[str, str] = {}
    for cid, status in session.execute(query):
        if reasons.get(cid) != "dunning message scheduled":
            reasons[cid] = "dunning message scheduled" if status != "sent" else "cooldown (dunning message)"
    return reasons


@dataclass(frozen=True)
class ContactClaim:
    """This run owns the customer until `finish_contact`; `sends` and `started_at` identify the message."""

    customer_id: str
    token: str
    sends: int
    started_at: datetime


def claim_contact(
    session: Session | Connection, customer_id: str, now: datetime, cooldown: timedelta, lease: timedelta, run_id: str
) -> ContactClaim | None:
    """Reserve `customer_id` for this run, or None when messaged within the cooldown or claimed elsewhere.

    One conditional UPDATE on the customer's unique row: of two runs, exactly one gets rowcount 1.
    """
    token = str(uuid.uuid4())
    table = CampaignContact.__table__
    insert_if_absent(
        session,
        table,
        dict(customer_id=customer_id, status="idle", sends=0, created_at=now, updated_at=now),
        ["customer_id"],
    )
    claimed = session.execute(
        update(table)
        .where(
            table.c.customer_id == customer_id,
            or_(table.c.status != "sending", table.c.locked_until < now),
            or_(table.c.last_sent_at.is_(None), table.c.last_sent_at <= now - cooldown),
        )
        .values(
            status="sending",
            claim_token=token,
            locked_until=now + lease,
            last_attempt_at=now,
            attempt_started_at=func.coalesce(table.c.attempt_started_at, now),
            run_id=run_id,
            updated_at=now,
        )
        .returning(table.c.sends, table.c.attempt_started_at)
    ).first()
    if claimed is None:
        return None
    sends, started = claimed
    return ContactClaim(customer_id, token, sends or 0, started or now)


def finish_contact(session: Session | Connection, claim: ContactClaim, now: datetime, **values) -> bool:
    """Record how the claimed attempt ended and release the claim (only if this run still holds it)."""
    table = CampaignContact.__table__
    return (
        session.execute(
            update(table)
            .where(table.c.customer_id == claim.customer_id, table.c.claim_token == claim.token)
            .values(claim_token=None, locked_until=None, updated_at=now, **values)
        ).rowcount
        == 1
    )


def _record_sent(
    session: Session | Connection,
    claim: ContactClaim,
    now: datetime,
    invoices: list[InvoiceView],
    case_ids: list[int],
    provider: str,
    message_id: str | None,
    duplicate: bool,
) -> None:
    table = CampaignContact.__table__
    finish_contact(
        session,
        claim,
        now,
        status="sent",
        sends=table.c.sends + 1,
        last_sent_at=now,
        attempt_started_at=None,
        invoice_ids=",".join(inv.id for inv in invoices),
        provider=provider,
        provider_message_id=message_id,
        last_error="the email tool had already accepted this message" if duplicate else None,
    )
    if case_ids:
        # The cases' counters feed the ledger's attribution (message -> click -> payment).
        cases = DunningCase.__table__
        session.execute(
            update(cases)
            .where(cases.c.id.in_(case_ids))
            .values(
                messages_sent=cases.c.messages_sent + 1,
                updated_at=now,
                first_message_at=func.coalesce(cases.c.first_message_at, now),
            )
        )


def _open_cases(session: Session, invoices: list[InvoiceView], now: datetime) -> dict[str, int]:
    """The open dunning case of each invoice, created when missing: `/r/<token>` links name a case,
    and a later `invoice.paid` then lands in the recovery ledger with its attribution."""
    ids: dict[str, int] = {}
    for inv in invoices:
        case = dunning.open_case(session, inv, now)
        if case.status == "open":
            ids[inv.id] = case.id
    return ids


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
        if svc.billing is None:
            raise ConfigurationNeeded("STRIPE_SECRET_KEY is not set: the campaign reads invoices from Stripe")
        if options.dry_run and options.csv_path:
            raise ValueError("--dry-run and --csv are alternatives: pick one")
        self.svc = svc
        self.options = options
        self.echo = echo
        self.progress_stream = progress_stream
        self.tty = tty
        mode = "dry-run" if options.dry_run else "csv" if options.csv_path else "send"
        self.report = CampaignReport(run_id=str(uuid.uuid4()), mode=mode)
        stripe_rate = options.stripe_rate or (STRIPE_RATE_LIVE if svc.settings.stripe_livemode else STRIPE_RATE_TEST)
        pacing = dict(
            max_retries=options.max_retries, backoff_base=options.backoff_base, backoff_max=options.backoff_max
        )
        self.stripe = Pacer("stripe", TokenBucket(stripe_rate), **pacing)
        self.messenger = Pacer(
            "messenger",
            TokenBucket(options.messenger_rate),
            also_pause=(getattr(svc.messenger, "bucket", None),),
            **pacing,
        )
        self.stop = threading.Event()
        self.use_links = bool(svc.settings.public_url)

    def _progress(self, label: str, total: int | None, unit: str) -> Progress:
        stream = self.progress_stream or sys.stderr
        return Progress(
            label,
            total,
            stream,
            tty=self.tty,
            interval=self.options.progress_interval,
            unit=unit,
            postfix=self.report.progress_text if total is not None else None,
        )

    def run(self) -> CampaignReport:
        """List, select, then send (or print, or write the CSV); never raises for one customer's error."""
        started = time.monotonic()
        try:
            targets = self.select(self.collect())
            if self.report.mode == "dry-run":
                for target in targets:
                    self._print_plan(target)
            elif self.report.mode == "csv":
                self._write_csv(targets)
            else:
                self._fan_out(targets, self.send_to)
        finally:
            self.report.stripe_throttled = self.stripe.throttled
            self.report.messenger_throttled = self.messenger.throttled
            self.report.retried = self.stripe.retried + self.messenger.retried
            self.report.elapsed = time.monotonic() - started
        return self.report

    # 1. every open invoice, grouped by customer
    def collect(self) -> dict[str, list[InvoiceView]]:
        """All eligible open invoices by customer (insertion order: Stripe's, newest first)."""
        by_customer: dict[str, list[InvoiceView]] = {}
        listed: list[InvoiceView] = []
        with self._progress("listing open invoices", None, "invoice") as progress:
            for inv in self.svc.billing.list_open_invoices(call=self.stripe):
                listed.append(inv)
                progress.advance()
        self.report.listed = len(listed)
        with self.svc.db.session() as s:
            case_reasons = _case_exclusions(s, [inv.id for inv in listed])
        for inv in listed:
            reason = eligible_reason(inv) or case_reasons.get(inv.id)
            if reason:
                self.report.excluded[reason] += 1
                continue
            by_customer.setdefault(inv.customer_id, []).append(inv)
        self.report.customers = len(by_customer)
        return by_customer

    # 2. who is due a message
    def select(self, by_customer: dict[str, list[InvoiceView]]) -> list[Target]:
        """The customers not messaged within the cooldown, at most `limit` of them."""
        with self.svc.db.session() as s:
            recent = recently_messaged(s, self.svc.clock.now(), self.options.cooldown)
        targets = []
        for customer_id, invoices in by_customer.items():
            reason = recent.get(customer_id)
            if reason:
                self.report.skip(reason)
                continue
            targets.append(Target(customer_id, invoices))
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

    # 3. concurrently, under the rate limits
    def _fan_out(
        self, targets: list[Target], work: Callable[[Target], object], on_result: Callable[[object], None] | None = None
    ) -> None:
        window = max(1, self.options.concurrency) * 4  # bounded: a million customers are not a million futures
        pending: set[Future] = set()
        todo = iter(targets)
        with (
            self._progress("campaign", len(targets), "customer") as progress,
            ThreadPoolExecutor(max_workers=max(1, self.options.concurrency), thread_name_prefix="campaign") as pool,
        ):
            try:
                while True:
                    while len(pending) < window and not self.stop.is_set():
                        target = next(todo, None)
                        if target is None:
                            break
                        pending.add(pool.submit(work, target))
                    if not pending:
                        unstarted = sum(1 for _ in todo)
                        if unstarted:
                            self.report.skipped["not attempted (run stopped)"] += unstarted
                        break
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        result = future.result()  # a crash (BaseException) propagates from here
                        if on_result is not None:
                            on_result(result)
                        progress.advance()
            except BaseException:
                # Ctrl-C or a crash: start nothing new; claims in flight stay until their lease ends.
                self.stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def send_to(self, target: Target) -> None:
        """Message one customer; every failure is counted and recorded, none escapes (but a crash)."""
        if self.stop.is_set():
            self.report.skip("not attempted (run stopped)")
            return
        customer_id = target.customer_id
        now = self.svc.clock.now()
        with self.svc.db.engine.begin() as s:  # a bare connection: this runs once per customer
            # Checked again here: the worker may have messaged them since the run started.
            busy = worker_activity(s, now, self.options.cooldown, customer_id).get(customer_id)
            claim = (
                None
                if busy
                else claim_contact(s, customer_id, now, self.options.cooldown, self.options.lease, self.report.run_id)
            )
            if claim is None and not busy:  # another run got there first: say why
                busy = campaign_activity(s, now, self.options.cooldown, customer_id).get(customer_id)
        if claim is None:
            self.report.skip(busy or "claimed by another run (retried after its lease)")
            return
        try:
            self._deliver(target, claim)
        except ConfigurationNeeded as exc:
            # Every customer would fail the same way (e.g. no portal configuration): stop here.
            self.stop.set()
            self.report.stopped = str(exc)
            self._failed(claim, "configuration", str(exc))
        except RecoveryError as exc:
            kind = (
                "resource_missing"
                if isinstance(exc, CustomerMissing)
                else "messenger rejected"
                if isinstance(exc, MessengerRejected)
                else "gave up after retries"
                if isinstance(exc, TransientError)
                else "rejected"
                if isinstance(exc, PermanentError)
                else "error"
            )
            log.warning("campaign: customer %s not messaged (%s): %s", customer_id, kind, exc)
            self._failed(claim, kind, str(exc))
        except Exception as exc:  # a bug: say so loudly, keep going with the other customers
            log.exception("campaign: unexpected error for customer %s", customer_id)
            self._failed(claim, "unexpected", f"{type(exc).__name__}: {exc}")

    def _failed(self, claim: ContactClaim, kind: str, detail: str) -> None:
        with self.svc.db.engine.begin() as s:
            finish_contact(s, claim, self.svc.clock.now(), status="failed", last_error=detail)
        self.report.error(kind, claim.customer_id, detail)

    def _deliver(self, target: Target, claim: ContactClaim) -> None:
        customer_id = target.customer_id
        # Re-read at send time: an invoice may have been paid (or a new one failed) since the listing.
        fresh = [
            inv
            for inv in self.svc.billing.list_open_invoices(customer=customer_id, call=self.stripe)
            if eligible_reason(inv) is None
        ]
        now = self.svc.clock.now()
        case_ids: dict[str, int] = {}
        with self.svc.db.session() as s:
            if self.use_links:
                # Opens the missing cases and reports the others' status: a case closed or paused
                # since the listing drops its invoice here.
                case_ids = _open_cases(s, fresh, now)
                fresh = [inv for inv in fresh if inv.id in case_ids]
            elif fresh:
                closed = _case_exclusions(s, [inv.id for inv in fresh])
                fresh = [inv for inv in fresh if inv.id not in closed]
            if not fresh:
                finish_contact(s, claim, now, status="idle", last_error="no unpaid invoice left at send time")
        if not fresh:
            self.report.skip("paid meanwhile")
            return
        email = next((inv.customer_email for inv in fresh if inv.customer_email), None)
        if not email:
            raise PermanentError("the customer's open invoices carry no email address")
        key = idempotency_key(customer_id, claim.sends + 1)
        url, portal_url = self._link(customer_id, fresh, case_ids, claim.started_at, f"{key}-portal")
        message = Message(
            kind="payment_failed",
            email=email,
            customer_id=customer_id,
            customer_name=next((inv.customer_name for inv in fresh if inv.customer_name), None),
            update_payment_url=url,
            portal_url=portal_url,
            invoice=_line(fresh[0]),
            created_at=claim.started_at,
            other_invoices=tuple(_line(inv) for inv in fresh[1:]),
        )
        result = self.messenger(lambda: self.svc.messenger.send(message, key))
        with self.svc.db.engine.begin() as s:
            _record_sent(
                s,
                claim,
                self.svc.clock.now(),
                fresh,
                list(case_ids.values()),
                result.provider,
                result.message_id,
                result.duplicate,
            )
        with self.report._lock:
            if result.duplicate:
                self.report.already_sent += 1
            else:
                self.report.sent += 1

    def _link(
        self,
        customer_id: str,
        invoices: list[InvoiceView],
        case_ids: dict[str, int],
        issued_at: datetime,
        portal_key: str | None = None,
    ) -> tuple[str, str | None]:
        """(update URL, portal session URL or None), generated at send time, not at listing.

        `issued_at` and `portal_key` stay the same on a retry of one message, so the retry carries the
        same link (signed as of `issued_at`) and the same portal session (Stripe's idempotency).
        """
        primary_case = next((case_ids[inv.id] for inv in invoices if inv.id in case_ids), None)
        durable = (
            links.recovery_url(self.svc.settings, primary_case, None, issued_at) if primary_case is not None else None
        )
        if self.report.mode == "csv" and durable:
            return durable, None  # the portal session is minted when the customer clicks
        # An emailed raw session URL may be opened after it expired: fall back to Stripe's login then.
        portal = self.stripe(
            lambda: self.svc.billing.create_portal_session(
                customer_id, idempotency_key=portal_key, after_expiration_login=durable is None
            )
        )
        return durable or portal.url, portal.url

    # CSV instead of sending
    def _write_csv(self, targets: list[Target]) -> None:
        with open(self.options.csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)

            def rows_for(target: Target) -> list[tuple]:
                if self.stop.is_set():
                    return []
                try:
                    now = self.svc.clock.now()
                    case_ids: dict[str, int] = {}
                    if self.use_links:
                        with self.svc.db.session() as s:
                            case_ids = _open_cases(s, target.invoices, now)
                    url, _ = self._link(target.customer_id, target.invoices, case_ids, now)
                except ConfigurationNeeded as exc:
                    self.stop.set()
                    self.report.stopped = str(exc)
                    self.report.error("configuration", target.customer_id, str(exc))
                    return []
                except RecoveryError as exc:
                    kind = "resource_missing" if isinstance(exc, CustomerMissing) else "error"
                    self.report.error(kind, target.customer_id, str(exc))
                    return []
                return [
                    (target.customer_id, inv.id, url, str(to_decimal(_remaining(inv), inv.currency)), inv.currency)
                    for inv in target.invoices
                ]

            def write(rows: object) -> None:
                # Written by the main thread as results arrive: a crash keeps every finished row.
                writer.writerows(rows)
                self.report.csv_rows += len(rows)

            self._fan_out(targets, rows_for, on_result=write)


def run_campaign(svc: Services, options: CampaignOptions, **kwargs) -> CampaignReport:
    """Run one campaign with `options` (see `Campaign`)."""
    return Campaign(svc, options, **kwargs).run()
