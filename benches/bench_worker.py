"""Worker: notifications sent per second by `webhook-app worker` processes, and pacing at Loops' limit.

Stand-in Stripe and Loops run in their own processes, each answering after 100 ms. The inbox is
seeded with distinct `invoice.payment_failed` events and their handlers are run first (so the outbox
holds one due notification per invoice); then one worker process starts and sends them all: per
notification it re-reads the invoice, creates a portal session and sends through Loops (3 calls).
Rate = notifications sent / the span between the first and the last send (from `sent_at`), so the
process start-up is not counted.

Runs (PostgreSQL, the engine for separate worker processes; SQLite when it is not available):
- no limit anywhere (`LOOPS_RATE_PER_SECOND` and `STRIPE_RATE_PER_SECOND` set far above what is
  reached), every other setting the default (`WORKER_CONCURRENCY`, `DB_POOL_SIZE`, `DB_MAX_OVERFLOW`):
  sent/s against the target of 30/s per process, failed notifications, and the most PostgreSQL
  connections the worker process held (sampled from `pg_stat_activity` by its `application_name`
  at every poll), against 5;
- Loops limited to 10 req/s (the stand-in answers 429 past it), the default `LOOPS_RATE_PER_SECOND=10`,
  with ONE and with TWO worker processes sharing the limit through the database: the rate Loops
  accepted (its first to its last accepted send) against 0.9 x the limit, answers 429, failed
  notifications (target 0).
"""

from __future__ import annotations

import threading
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
    from tests.fixtures.inbox import store_stripe
    from tests.fixtures.stripe_objects import event
    from webhook_app import create_app
    from webhook_app.services import services
    from webhook_app.worker import Worker

    app = create_app({**config, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        svc = services()
        now = svc.clock.now()
        for i in range(count):
            store_stripe(svc.db, event("invoice.payment_failed", _invoice(run, i), event_id=f"evt_{run}_{i:06d}"), now)
        # Handling reads the invoice's payments from the stand-in (100 ms): on 8 threads, not one.
        worker = Worker(svc, batch_size=20)

        def handle() -> None:
            while worker.process_events():
                pass

        threads = [threading.Thread(target=handle) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
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


def pg_connections(database_url: str, names: list[str]) -> dict[str, int]:
    """Connections each `application_name` holds now (PostgreSQL); {} on SQLite."""
    if not database_url.startswith("postgres"):
        return {}
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name = ANY(%s) "
            "GROUP BY application_name",
            (names,),
        ).fetchall()
    return {name: int(n) for name, n in rows}


def _named(database_url: str, name: str) -> str:
    """The URL with an application_name, so pg_stat_activity tells this process's connections apart."""
    if not database_url.startswith("postgres"):
        return database_url
    return f"{database_url}{'&' if '?' in database_url else '?'}application_name={name}"


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
    workers: int = 1,
) -> dict:
    """`workers` worker processes sending `count` notifications; returns rate, failures, connections and
    stand-in counters."""
    stripe = StandIn(procs, "stripe", f"worker-{run}-stripe", LATENCY)
    loops = StandIn(procs, "loops", f"worker-{run}-loops", LATENCY, loops_limit)
    stripe.load_invoices([_invoice(run, i) for i in range(count)])
    config = {
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe.url,
        # Stripe is not the limit measured here: 2 calls a message at 30/s is over test mode's 25 req/s.
        "STRIPE_RATE_PER_SECOND": "100000",
        "MESSAGING_PROVIDER": "loops",
        "LOOPS_API_KEY": LOOPS_KEY,
        "LOOPS_API_BASE": loops.url + "/api",
        "LOOPS_TRANSACTIONAL_ID": "tx_bench",
        "LOOPS_RATE_PER_SECOND": str(loops_rate),
        "SECRET_KEY": "bench-secret-key",
        "PUBLIC_URL": "https://recover.example.test",
        "PORTAL_RETURN_URL": "https://app.example.test/billing",
        "WORKER_MODE": "external",
        # Every notification due at once (the default holds a first message 300 s for its siblings).
        "DUNNING_GROUP_WINDOW_SECONDS": "0",
    }
    if concurrency:
        config["WORKER_CONCURRENCY"] = str(concurrency)
    seed_outbox(config, run, count)
    stripe.reset()
    loops.reset()
    names = [f"bench_{run}_w{i}" for i in range(workers)]
    worker_procs = [
        procs.start(
            f"worker-{run}-{i}",
            cli_cmd("worker"),
            base_env(**{**config, "DATABASE_URL": _named(database_url, name)}, LOG_LEVEL="WARNING"),
        )
        for i, name in enumerate(names)
    ]
    started = time.monotonic()
    cpu_marks: list[tuple[int, float]] = []  # (notifications done, CPU seconds of the first worker) at each poll
    most_connections = 0

    def finished():
        nonlocal most_connections
        for worker in worker_procs:
            worker.check_alive()
        held = pg_connections(database_url, names)
        most_connections = max([most_connections, *held.values()])
        state = outbox_state(database_url, run)
        done = sum(n for s, n in state["counts"].items() if s in ("sent", "failed", "skipped"))
        cpu_marks.append((done, process_cpu_seconds(worker_procs[0].pid)))
        return state if done >= count else None

    try:
        state = wait_for(finished, timeout, f"the worker to send {count} notifications", interval=0.5)
        timed_out = False
    except TimeoutError:
        state, timed_out = outbox_state(database_url, run), True
    wall = time.monotonic() - started
    for worker in worker_procs:
        worker.stop()
    # CPU per notification in steady state (from the first poll that saw a send to the last poll).
    busy = [m for m in cpu_marks if m[0] > 0]
    cpu_ms = None
    if workers == 1 and len(busy) >= 2 and busy[-1][0] > busy[0][0]:
        cpu_ms = round((busy[-1][1] - busy[0][1]) * 1000 / (busy[-1][0] - busy[0][0]), 1)
    loops_stats, stripe_stats = loops.stats(), stripe.stats()
    stripe.stop()
    loops.stop()
    sent = state["counts"].get("sent", 0)
    span = (state["last_sent"] - state["first_sent"]).total_seconds() if sent > 1 else None
    rate = (sent - 1) / span if span else None
    result = {
        "notifications": count,
        "workers": workers,
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
        "max_pg_connections_per_worker": most_connections if database_url.startswith("postgres") else None,
        "loops": {k: loops_stats[k] for k in ("ok", "throttled", "total", "messages", "distinct_message_keys")},
        "stripe": {k: stripe_stats[k] for k in ("ok", "throttled", "total")},
    }
    if loops_stats.get("first_ok") and loops_stats.get("last_ok") and loops_stats["ok"] > 1:
        result["loops_accepted_rate"] = round(
            (loops_stats["ok"] - 1) / (loops_stats["last_ok"] - loops_stats["first_ok"]), 2
        )
    log(
        f"  worker {run} ({workers} process{'es' if workers > 1 else ''}): {sent}/{count} sent at "
        f"{result['rate']}/s, failed {result['failed']}, retried {result['retried']}, Loops 429s "
        f"{loops_stats['throttled']}, most PG connections per worker {most_connections}, "
        f"worker CPU {cpu_ms} ms/notification"
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

    return Settings().worker.concurrency


def run(workdir: Path) -> list[Figure]:
    """All worker figures."""
    pg_reason = pg_available()
    procs = Processes(workdir)
    pg = None if pg_reason else PgDatabase("worker")
    database_url = pg.url if pg else f"sqlite:///{workdir / 'worker.sqlite3'}"
    engine_name = "PostgreSQL" if pg else f"SQLite ({pg_reason})"
    default = default_concurrency()
    try:
        run_cli(base_env(DATABASE_URL=database_url), "db", "upgrade")
        log(f"worker: no limit, default settings (WORKER_CONCURRENCY={default}), stand-ins at {LATENCY * 1000:.0f} ms")
        at_default = measure(
            procs, database_url, "wdefault", 900, concurrency=None, loops_limit=None, loops_rate=100000, timeout=150
        )
        limited = {}
        for workers in (1, 2):
            log(f"worker: Loops limited to {LOOPS_LIMIT:g} req/s, LOOPS_RATE_PER_SECOND default, {workers} process(es)")
            limited[workers] = measure(
                procs,
                database_url,
                f"wlimit{workers}",
                300,
                concurrency=None,
                loops_limit=LOOPS_LIMIT,
                loops_rate=LOOPS_LIMIT,
                timeout=150,
                workers=workers,
            )
    finally:
        procs.stop_all()
        if pg is not None:
            pg.drop()
    per_send = f"3 calls of {LATENCY * 1000:.0f} ms per notification"
    figures = [
        Figure.measured(
            "worker.rate.default",
            BENCH,
            f"sent/s per process, no limit, default settings (WORKER_CONCURRENCY={default})",
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
            "worker.rate.failed",
            BENCH,
            "no limit, default settings: failed notifications",
            at_default["failed"] + (at_default["notifications"] - at_default["sent"] - at_default["failed"]),
            "",
            op="==",
            threshold=0,
            note=f"{at_default['sent']}/{at_default['notifications']} sent",
            detail={},
        ),
        Figure.measured(
            "worker.connections",
            BENCH,
            "no limit, default settings: most PostgreSQL connections of the worker process",
            at_default["max_pg_connections_per_worker"],
            "",
            op="<=",
            threshold=5,
            note=f"pg_stat_activity by application_name, sampled every 0.5 s; {default} sending threads",
            detail={},
        ),
    ]
    for workers, result in limited.items():
        suffix = "" if workers == 1 else f", {workers} worker processes sharing the limit"
        key = "" if workers == 1 else f".{workers}"
        # The provider's view: accepted sends / the span between its first and last (sent_at is stamped
        # before a send's three calls, so it jitters by up to a send's length).
        accepted = result.get("loops_accepted_rate")
        figures += [
            Figure.measured(
                f"worker.limited{key}.ratio",
                BENCH,
                f"Loops at {LOOPS_LIMIT:g} req/s{suffix}: achieved / limit",
                round(accepted / LOOPS_LIMIT, 3) if accepted else None,
                "×",
                op=">=",
                threshold=0.9,
                note=f"Loops accepted {accepted}/s (sent_at: {result['rate']}/s); "
                f"{result['loops']['throttled']} answers 429, "
                f"{result['retried']} notifications retried",
                detail=result,
            ),
            Figure.measured(
                f"worker.limited{key}.failed",
                BENCH,
                f"Loops at {LOOPS_LIMIT:g} req/s{suffix}: failed notifications",
                result["failed"] + (result["notifications"] - result["sent"] - result["failed"]),
                "",
                op="==",
                threshold=0,
                note=f"{result['sent']}/{result['notifications']} sent",
                detail={},
            ),
        ]
    return figures
