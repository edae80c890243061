"""Campaign: `webhook-app campaign` over 10,000 open invoices against a Stripe limited to 25 req/s.

The Stripe stand-in (own process) holds 10,000 open, attempted invoices for 5,000 customers (two
unpaid months each) and answers 429 past 25 requests in any one-second window, each answer after
100 ms. The campaign runs as its own process and sends through a Loops stand-in without a limit
(`--messenger-rate` far above what is reached), so that Stripe's limit is the one that binds.

One run: 10,000 invoices with the shipped default `--stripe-rate`, 25 req/s for a test-mode key, the
limit itself: the limiter is shared through the database by every process on the key (the web and
worker processes take their requests from the same slots) and paces a little under it.

Figures: effective Stripe rate = successful Stripe requests / the span from the first to the last one
(listing 100 pages, then per customer a re-list and a portal session), against 0.9 x 25; customers
not messaged (target 0); peak RSS of the campaign process (`ru_maxrss` from wait4), against 200 MB.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from benches.bench_worker import StandIn
from benches.common import (
    LOOPS_KEY,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    Figure,
    PgDatabase,
    Processes,
    base_env,
    cli_cmd,
    log,
    pg_available,
    run_cli,
)

BENCH = "Campaign"
INVOICES = 10_000
INVOICES_PER_CUSTOMER = 2
STRIPE_LIMIT = 25.0
LATENCY = 0.1
TIMEOUT = 1200  # s; the run needs about 10,100 calls / (0.95 x 25 req/s) = 425 s


def _invoices(run: str, count: int) -> list[dict]:
    from tests.fixtures.stripe_objects import invoice

    now = int(time.time())
    out = []
    for i in range(count):
        customer = i // INVOICES_PER_CUSTOMER
        out.append(
            invoice(
                invoice_id=f"in_{run}_{i:06d}",
                customer=f"cus_{run}_{customer:06d}",
                email=f"customer{customer}@example.com",
                attempt_count=1 + i % 4,
                amount_due=1000 + (i % 50) * 100,
                next_payment_attempt=now + 86400 * (1 + i % 5),
                number=f"INV-{i:06d}",
            )
        )
    return out


def campaign_available() -> str | None:
    """None when `webhook-app campaign` exists in this checkout, else why it cannot be measured."""
    try:
        from webhook_app.ops import campaign  # noqa: F401
        from webhook_app.ops.commands import campaign_command  # noqa: F401
    except Exception as exc:  # not written yet, or broken mid-edit
        return f"`webhook-app campaign` is not importable ({type(exc).__name__}: {exc})"
    return None


def _one(procs: Processes, database_url: str, run: str, invoices: int, stripe_rate: float | None, *extra: str) -> dict:
    """One campaign process over `invoices` open invoices; returns what it did and what it cost."""
    stripe = StandIn(procs, "stripe", f"{run}-stripe", LATENCY, STRIPE_LIMIT)
    loops = StandIn(procs, "loops", f"{run}-loops", LATENCY)
    stripe.load_invoices(_invoices(run, invoices))
    env = base_env(
        DATABASE_URL=database_url,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe.url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=LOOPS_KEY,
        LOOPS_API_BASE=loops.url + "/api",
        LOOPS_TRANSACTIONAL_ID="tx_bench",
        LOOPS_RATE_PER_SECOND="100000",
        SECRET_KEY="bench-secret-key",
        PUBLIC_URL="https://recover.example.test",
        PORTAL_RETURN_URL="https://app.example.test/billing",
        WORKER_MODE="external",
        LOG_LEVEL="WARNING",
    )
    run_cli(env, "db", "upgrade")
    stripe.reset()
    customers = invoices // INVOICES_PER_CUSTOMER
    calls = invoices // 100 + 1 + 2 * customers
    rate_args = ["--stripe-rate", f"{stripe_rate:g}"] if stripe_rate else []
    log(
        f"campaign {run}: {invoices:,} open invoices, {customers:,} customers, Stripe limited to "
        f"{STRIPE_LIMIT:g} req/s ({LATENCY * 1000:.0f} ms), {' '.join(rate_args) or 'default --stripe-rate'}; "
        f"at least {calls / (stripe_rate or STRIPE_LIMIT) / 60:.1f} min"
    )
    proc = procs.start(run, cli_cmd("campaign", *rate_args, "--messenger-rate", "100000", *extra), env)
    started = time.monotonic()
    try:
        code = proc.wait(TIMEOUT)
    except TimeoutError:
        code = None
    elapsed = time.monotonic() - started
    output = proc.tail(20000)
    peak_kb = proc.rusage.ru_maxrss if proc.rusage else None
    stripe_stats, loops_stats = stripe.stats(), loops.stats()
    proc.stop()
    stripe.stop()
    loops.stop()
    contacts = _contact_counts(database_url, run)
    span = (stripe_stats["last_ok"] or 0) - (stripe_stats["first_ok"] or 0)
    rate = (stripe_stats["ok"] - 1) / span if span > 0 else None
    sent = contacts.get("sent", 0)
    result = {
        "run": run,
        "invoices": invoices,
        "customers": customers,
        "stripe_rate_option": stripe_rate or "default",
        "exit_code": code,
        "elapsed_seconds": round(elapsed, 1),
        "stripe": stripe_stats,
        "stripe_rate": round(rate, 2) if rate else None,
        "span_seconds": round(span, 1),
        "loops_messages": loops_stats["messages"],
        "contacts": contacts,
        "sent": sent,
        "failed_customers": customers - sent if code is not None else None,
        "errors_in_summary": _summary_errors(output),
        "summary": [ln for ln in output.splitlines() if ln.startswith(("campaign send", "  "))][-12:],
        "peak_rss_kb": peak_kb,
        "customers_per_second": round(sent / elapsed, 2) if elapsed else None,
    }
    log(
        f"  {run}: exit {code}, {sent}/{customers} customers sent in {elapsed:.0f} s, Stripe "
        f"{result['stripe_rate']} req/s ({stripe_stats['throttled']} answered 429), peak RSS "
        f"{peak_kb and peak_kb / 1024:.0f} MB"
    )
    return result


def run(workdir: Path) -> list[Figure]:
    """All campaign figures."""
    missing = campaign_available()
    if missing:
        return [
            Figure.missing("campaign.rate", BENCH, "effective Stripe rate / limit", missing, op=">=", threshold=0.9),
            Figure.missing("campaign.failed", BENCH, "failed customers", missing, op="==", threshold=0),
            Figure.missing("campaign.rss", BENCH, "peak RSS", missing, op="<=", threshold=200),
        ]
    pg_reason = pg_available()
    procs = Processes(workdir)
    pg = None if pg_reason else PgDatabase("campaign")
    database_url = pg.url if pg else f"sqlite:///{workdir / 'campaign.sqlite3'}"
    try:
        main = _one(procs, database_url, "campdefault", INVOICES, None)
    finally:
        procs.stop_all()
        if pg is not None:
            pg.drop()

    def rate_note(r: dict) -> str:
        timeout = "" if r["exit_code"] is not None else f"; did not finish within {TIMEOUT} s"
        return (
            f"{r['stripe_rate']} req/s over {r['span_seconds']:.0f} s, {r['stripe']['throttled']} answers 429, "
            f"{r['customers_per_second']} customers/s{timeout}"
        )

    ratio = lambda r: round(r["stripe_rate"] / STRIPE_LIMIT, 3) if r["stripe_rate"] else None  # noqa: E731
    return [
        Figure.measured(
            "campaign.rate",
            BENCH,
            f"{INVOICES:,} invoices, default --stripe-rate (25 in test mode, shared): Stripe rate / limit",
            ratio(main),
            "×",
            op=">=",
            threshold=0.9,
            note=rate_note(main),
            detail=main,
        ),
        Figure.measured(
            "campaign.failed",
            BENCH,
            f"{INVOICES:,} invoices: failed customers",
            main["failed_customers"],
            "",
            op="==",
            threshold=0,
            note=f"{main['sent']:,}/{main['customers']:,} messaged; summary errors: "
            f"{main['errors_in_summary']}; exit code {main['exit_code']}",
        ),
        Figure.measured(
            "campaign.rss",
            BENCH,
            f"{INVOICES:,} invoices: peak RSS of the campaign process",
            round(main["peak_rss_kb"] / 1024, 1) if main["peak_rss_kb"] else None,
            "MB",
            op="<=",
            threshold=200,
            note="ru_maxrss of the `webhook-app campaign` process",
        ),
    ]


def _summary_errors(output: str) -> int | None:
    match = re.search(r"^\s*errors: (\d+)", output, re.M)
    return int(match.group(1)) if match else None


def _contact_counts(database_url: str, run: str) -> dict:
    """Customers of this run with a sent message, and the run's notifications by status."""
    from sqlalchemy import create_engine, func, select

    from webhook_app.config import normalize_database_url
    from webhook_app.models import DunningCase, Notification

    engine = create_engine(normalize_database_url(database_url))
    mine = DunningCase.customer_id.like(f"cus_{run}_%")
    try:
        with engine.connect() as conn:
            by_status = dict(
                conn.execute(
                    select(Notification.status, func.count())
                    .join(DunningCase, DunningCase.id == Notification.case_id)
                    .where(mine)
                    .group_by(Notification.status)
                ).all()
            )
            sent = conn.scalar(
                select(func.count(func.distinct(DunningCase.customer_id)))
                .join(Notification, Notification.case_id == DunningCase.id)
                .where(mine, Notification.status == "sent")
            )
    finally:
        engine.dispose()
    return {"sent": sent or 0, "notifications": by_status}
