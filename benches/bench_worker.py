"""Worker: notifications sent per second by one `webhook-app worker` process.

Stand-in Stripe and Loops run in their own processes, each answering after 100 ms. The inbox is
seeded with distinct `invoice.payment_failed` events and their handlers are run first (so the outbox
holds one due notification per invoice); then one worker process starts and sends them all: per
notification it re-reads the invoice, creates a portal session and sends through Loops (3 calls).
Rate = notifications sent / the span between the first and the last send (from `sent_at`), so the
process start-up is not counted.

Runs (PostgreSQL, the engine for separate worker processes; SQLite when it is not available):
- no limit anywhere (`LOOPS_RATE_PER_SECOND` set far above what is reached), with the default
  `WORKER_CONCURRENCY` and with a larger one, against the target of 30/s per process;
- Loops limited to 10 req/s (the stand-in answers 429 past it), the default `LOOPS_RATE_PER_SECOND=10`:
  achieved rate against 0.9 x the limit, and failed notifications (target 0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from benches.common import (
    LOOPS_KEY,
    PYTHON,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    Figure,
    PgDatabase,
    Processes,
    base_env,
    cli_cmd,
    free_port,
    log,
    pg_available,
    run_cli,
    wait_for,
    wait_http,
)

BENCH = "Worker"
LATENCY = 0.1
LOOPS_LIMIT = 10.0
TARGET_RATE = 30.0


class StandIn:
    """A stand-in server process (benches/standin_server.py) and its control surface."""

    def __init__(self, procs: Processes, kind: str, name: str, latency: float, rate_limit: float | None = None):
        port = free_port()
        args = [PYTHON, "-m", "benches.standin_server", "--kind", kind, "--port", str(port), "--latency", str(latency)]
        if rate_limit:
            args += ["--rate-limit", str(rate_limit)]
        self.proc = procs.start(name, args, base_env())
        self.url = f"http://127.0.0.1:{port}"
        wait_http(self.url + "/_bench/healthz", self.proc)

    def load_invoices(self, invoices: list[dict]) -> None:
        for i in range(0, len(invoices), 1000):
            requests.post(self.url + "/_bench/invoices", json=invoices[i : i + 1000], timeout=60).raise_for_status()

    def stats(self) -> dict:
        return requests.get(self.url + "/_bench/stats", timeout=10).json()

    def reset(self) -> None:
        requests.post(self.url + "/_bench/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.stop()


def _invoice(run: str, i: int) -> dict:
    from tests.fixtures.stripe_objects import invoice

    return invoice(
        invoice_id=f"in_{run}_{i:06d}",
        customer=f"cus_{run}_{i:06d}",
        email=f"customer{i}@example.com",
        attempt_count=1,
        next_payment_attempt=int(time.time()) + 3 * 86400,
    )


def seed_outbox(config: dict, run: str, count: int) -> None:
    """Store `count` failed-payment events and run their handlers: `count` due notifications."""
    from tests.fixtures.stripe_objects import event
    from webhook_app import create_app, inbox
    from webhook_app.services import services
    from webhook_app.worker import Worker

    app = create_app({**config, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        svc = services()
        now = svc.clock.now()
        for i in range(count):
            envelope = event("invoice.payment_failed", _invoice(run, i), event_id=f"evt_{run}_{i:06d}")
            inbox.store(svc.db, envelope, json.dumps(envelope), now)
        worker = Worker(svc, batch_size=200)
        while worker.process_events():
            pass
        svc.db.dispose()


def outbox_state(database_url: str, run: str) -> dict:
    """Counts by status of this run's notifications, and the first and last `sent_at`."""
    from sqlalchemy import create_engine, func, select

    from webhook_app.config import normalize_database_url
    from webhook_app.models import DunningCase, Notification

    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            mine = DunningCase.invoice_id.like(f"in_{run}_%")
            joined = (
                select(Notification.status, func.count())
                .join(DunningCase, DunningCase.id == Notification.case_id)
                .where(mine)
                .group_by(Notification.status)
            )
            counts = dict(conn.execute(joined).all())
            first, last = conn.execute(
                select(func.min(Notification.sent_at), func.max(Notification.sent_at))
                .join(DunningCase, DunningCase.id == Notification.case_id)
                .where(mine)
            ).one()
            retried = conn.scalar(
                select(func.count())
                .select_from(Notification)
                .join(DunningCase, DunningCase.id == Notification.case_id)
                .where(mine, Notification.attempts > 1)
            )
    finally:
        engine.dispose()
    return {"counts": counts, "first_sent": first, "last_sent": last, "retried": retried}


def measure(
    procs: Processes,
    database_url: str,
    run: str,
    count: int,
    *,
    concurrency: int | None,
    loops_limit: float | None,
    loops_rate: float,
    timeout: float,
) -> dict:
    """One worker process sending `count` notifications; returns rate, failures and stand-in counters."""
    stripe = StandIn(procs, "stripe", f"worker-{run}-stripe", LATENCY)
    loops = StandIn(procs, "loops", f"worker-{run}-loops", LATENCY, loops_limit)
    stripe.load_invoices([_invoice(run, i) for i in range(count)])
    config = {
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe.url,
        "MESSAGING_PROVIDER": "loops",
        "LOOPS_API_KEY": LOOPS_KEY,
        "LOOPS_API_BASE": loops.url + "/api",
        "LOOPS_TRANSACTIONAL_ID": "tx_bench",
        "LOOPS_RATE_PER_SECOND": str(loops_rate),
        "SECRET_KEY": "bench-secret-key",
        "PUBLIC_URL": "https://recover.example.test",
        "PORTAL_RETURN_URL": "https://app.example.test/billing",
        "WORKER_MODE": "external",
    }
    if concurrency:
        config["WORKER_CONCURRENCY"] = str(concurrency)
    seed_outbox(config, run, count)
    stripe.reset()
    loops.reset()
    worker = procs.start(f"worker-{run}", cli_cmd("worker"), base_env(**config, LOG_LEVEL="WARNING"))
    started = time.monotonic()
    cpu_marks: list[tuple[int, float]] = []  # (notifications done, worker CPU seconds) at each poll

    def finished():
        worker.check_alive()
        state = outbox_state(database_url, run)
        done = sum(n for s, n in state["counts"].items() if s in ("sent", "failed", "skipped"))
        cpu_marks.append((done, process_cpu_seconds(worker.pid)))
        return state if done >= count else None

    try:
        state = wait_for(finished, timeout, f"the worker to send {count} notifications", interval=0.5)
        timed_out = False
    except TimeoutError:
        state, timed_out = outbox_state(database_url, run), True
    wall = time.monotonic() - started
    worker.stop()
    # CPU per notification in steady state (from the first poll that saw a send to the last poll).
    busy = [m for m in cpu_marks if m[0] > 0]
    cpu_ms = None
    if len(busy) >= 2 and busy[-1][0] > busy[0][0]:
        cpu_ms = round((busy[-1][1] - busy[0][1]) * 1000 / (busy[-1][0] - busy[0][0]), 1)
    loops_stats, stripe_stats = loops.stats(), stripe.stats()
    stripe.stop()
    loops.stop()
    sent = state["counts"].get("sent", 0)
    span = (state["last_sent"] - state["first_sent"]).total_seconds() if sent > 1 else None
    rate = (sent - 1) / span if span else None
    result = {
        "notifications": count,
        "sent": sent,
        "failed": state["counts"].get("failed", 0),
        "statuses": state["counts"],
        "retried": state["retried"],
        "timed_out": timed_out,
        "rate": round(rate, 2) if rate else None,
        "span_seconds": round(span, 2) if span else None,
        "wall_seconds_incl_startup": round(wall, 2),
        "worker_concurrency": concurrency or "default",
        "worker_cpu_ms_per_notification": cpu_ms,
        "loops": {k: loops_stats[k] for k in ("ok", "throttled", "total", "messages", "distinct_message_keys")},
        "stripe": {k: stripe_stats[k] for k in ("ok", "throttled", "total")},
    }
    if loops_stats.get("first_ok") and loops_stats.get("last_ok") and loops_stats["ok"] > 1:
        result["loops_accepted_rate"] = round(
            (loops_stats["ok"] - 1) / (loops_stats["last_ok"] - loops_stats["first_ok"]), 2
        )
    log(
        f"  worker {run}: {sent}/{count} sent at {result['rate']}/s, failed {result['failed']}, "
        f"retried {result['retried']}, Loops 429s {loops_stats['throttled']}, worker CPU {cpu_ms} ms/notification"
    )
    return result


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (0 once it is gone)."""
    import os

    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def default_concurrency() -> int:
    from webhook_app.config import Settings

    return Settings().worker_concurrency


def _cpu_bound(result: dict) -> str:
    cpu = result.get("worker_cpu_ms_per_notification")
    return f"{1000 / cpu:.0f}" if cpu else "?"


def run(workdir: Path) -> list[Figure]:
    """All worker figures."""
    pg_reason = pg_available()
    procs = Processes(workdir)
    pg = None if pg_reason else PgDatabase("worker")
    database_url = pg.url if pg else f"sqlite:///{workdir / 'worker.sqlite3'}"
    engine_name = "PostgreSQL" if pg else f"SQLite ({pg_reason})"
    default = default_concurrency()
    wide = 12  # below the PostgreSQL pool (5 + 10 overflow): see docs/performance.md
    try:
        run_cli(base_env(DATABASE_URL=database_url), "db", "upgrade")
        log(f"worker: no limit, WORKER_CONCURRENCY={default} (default), stand-ins at {LATENCY * 1000:.0f} ms")
        at_default = measure(
            procs, database_url, "wdefault", 300, concurrency=None, loops_limit=None, loops_rate=100000, timeout=150
        )
        log(f"worker: no limit, WORKER_CONCURRENCY={wide}")
        at_wide = measure(
            procs, database_url, "wwide", 900, concurrency=wide, loops_limit=None, loops_rate=100000, timeout=150
        )
        log(f"worker: Loops limited to {LOOPS_LIMIT:g} req/s, LOOPS_RATE_PER_SECOND default")
        limited = measure(
            procs,
            database_url,
            "wlimit",
            300,
            concurrency=None,
            loops_limit=LOOPS_LIMIT,
            loops_rate=LOOPS_LIMIT,
            timeout=150,
        )
    finally:
        procs.stop_all()
        if pg is not None:
            pg.drop()
    per_send = f"3 calls of {LATENCY * 1000:.0f} ms per notification"
    return [
        Figure.measured(
            "worker.rate.default",
            BENCH,
            f"sent/s per process, no limit, WORKER_CONCURRENCY={default} (default)",
            at_default["rate"],
            "/s",
            op=">=",
            threshold=TARGET_RATE,
            note=f"{per_send}: at most {default} / 0.3 s = {default / 0.3:.1f}/s; "
            f"{at_default['failed']} failed; worker CPU "
            f"{at_default['worker_cpu_ms_per_notification']} ms/notification; {engine_name}",
            detail=at_default,
        ),
        Figure.measured(
            "worker.rate.wide",
            BENCH,
            f"sent/s per process, no limit, WORKER_CONCURRENCY={wide}",
            at_wide["rate"],
            "/s",
            op=">=",
            threshold=TARGET_RATE,
            note=f"{per_send}: at most {wide} / 0.3 s = {wide / 0.3:.0f}/s; {at_wide['failed']} failed; "
            f"worker CPU {at_wide['worker_cpu_ms_per_notification']} ms/notification "
            f"(one process: at most {_cpu_bound(at_wide)}/s); {engine_name}",
            detail=at_wide,
        ),
        Figure.measured(
            "worker.limited.ratio",
            BENCH,
            f"Loops at {LOOPS_LIMIT:g} req/s: achieved / limit",
            round(limited["rate"] / LOOPS_LIMIT, 3) if limited["rate"] else None,
            "×",
            op=">=",
            threshold=0.9,
            note=f"{limited['rate']}/s; {limited['loops']['throttled']} answers 429, "
            f"{limited['retried']} notifications retried",
            detail=limited,
        ),
        Figure.measured(
            "worker.limited.failed",
            BENCH,
            f"Loops at {LOOPS_LIMIT:g} req/s: failed notifications",
            limited["failed"] + (limited["notifications"] - limited["sent"] - limited["failed"]),
            "",
            op="==",
            threshold=0,
            note=f"{limited['sent']}/{limited['notifications']} sent",
            detail={},
        ),
    ]
