"""Finance at scale: 1,000,000 ledger rows on PostgreSQL.

Seeds a dedicated database (generated in SQL, so seeding takes seconds, not hours): 1,000,000 rows in
`recovery_ledger` over two years, three currencies (USD, EUR, JPY), 2 % of them refunds, test and live
mode; one `dunning_cases` row per recovered invoice, plus 200,000 lost cases (void / uncollectible /
canceled) and 20,000 still open. The SQL writes the tables directly, not through `webhook_app.ledger`,
so the daily roll-ups the dashboard reads are then filled by `webhook-app finance rebuild-rollups`, as an
operator would after a bulk load (timed: `rebuild_seconds` in the JSON). Then VACUUM ANALYZE, as
autovacuum would have done on tables that size (it also sets the visibility map index-only scans use).

The app runs under the Procfile's gunicorn config (`WORKER_MODE=external`, finance credentials set):
- dashboard: a sequential client requests `/finance` in every preset period the dashboard links to (last
  30 and 90 days, this month, last month, year to date, last 12 months) and in three more views (one
  currency, USD sorted by amount: amount sorts need one currency, the second page via its cursor), each
  repeatedly; p95 of all requests against 300 ms, and the slowest view's p95 (per view in the JSON and
  the note);
- CSV export of every row (`/finance/recoveries.csv` over the whole range) on a freshly started server:
  peak RSS (VmHWM) of the gunicorn worker that served it, against 150 MB, with its RSS sampled during
  the export to show it stays flat.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

import requests

from benches.common import (
    FINANCE_PASSWORD,
    FINANCE_USER,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    Figure,
    PgDatabase,
    Processes,
    base_env,
    children,
    log,
    peak_rss_kb,
    pg_available,
    rss_kb,
    run_cli,
    start_gunicorn,
)

BENCH = "Finance"
LEDGER_ROWS = 1_000_000
LOST_CASES = 200_000
OPEN_CASES = 20_000
REQUESTS_PER_VIEW = 20
TWO_YEARS = 2 * 365 * 86400

SEED_SQL = [
    # One case per ledger row (ids 1..N in order, so ledger row g belongs to case g).
    """
    INSERT INTO dunning_cases (provider, invoice_id, customer_id, subscription_id, customer_email, customer_name,
        invoice_number, currency, amount_due, attempt_count, livemode, status, close_reason, episode,
        messages_sent, first_failed_at, last_failed_at, first_message_at, paid_at, closed_at, created_at,
        updated_at)
    SELECT 'stripe', 'in_b' || g, 'cus_b' || (g % 400000), 'sub_b' || (g % 400000), 'customer' || g || '@example.com',
        'Customer ' || g, 'INV-' || g, cur, amt, 1 + g % 4, g % 20 <> 0, 'recovered', 'invoice paid', 1,
        1 + g % 3, paid - make_interval(secs => s), paid - make_interval(secs => s / 2),
        paid - make_interval(secs => s) + interval '1 minute', paid, paid,
        paid - make_interval(secs => s), paid
    FROM (
        SELECT g,
            CASE WHEN g % 10 < 7 THEN 'usd' WHEN g % 10 < 9 THEN 'eur' ELSE 'jpy' END AS cur,
            CASE WHEN g % 10 = 9 THEN 500 + (g * 37) % 20000 ELSE 900 + (g * 37) % 30000 END AS amt,
            (g * 131) % 1209600 AS s,
            %(now)s::timestamp - make_interval(secs => (g::bigint * 7919) % %(span)s) AS paid
        FROM generate_series(1, %(rows)s) AS g
    ) AS x
    """,
    # The ledger: recoveries, and every 50th row a refund offsetting an earlier recovery.
    """
    INSERT INTO recovery_ledger (provider, entry_key, kind, case_id, invoice_id, customer_id, amount, currency,
        livemode, first_failed_at, recovered_at, seconds_to_recover, attempts, messages_sent, attribution,
        first_message_at, first_click_at, seconds_message_to_click, seconds_click_to_payment, created_at)
    SELECT 'stripe', CASE WHEN refund THEN 'refund:re_b' || c.id ELSE 'recovery:' || c.invoice_id END,
        CASE WHEN refund THEN 'refund' ELSE 'recovery' END, c.id, c.invoice_id, c.customer_id,
        CASE WHEN refund THEN -c.amount_due ELSE c.amount_due END, c.currency, c.livemode,
        c.first_failed_at, c.paid_at, CASE WHEN refund THEN NULL ELSE
            extract(epoch FROM c.paid_at - c.first_failed_at)::int END,
        c.attempt_count, c.messages_sent,
        CASE WHEN refund THEN NULL WHEN c.id % 3 = 0 THEN 'link_click' WHEN c.id % 3 = 1 THEN 'provider_retry'
             ELSE 'out_of_band' END,
        c.first_message_at, CASE WHEN c.id % 3 = 0 THEN c.first_message_at + interval '2 hours' END,
        CASE WHEN c.id % 3 = 0 THEN 7200 END,
        CASE WHEN c.id % 3 = 0 THEN GREATEST(0, extract(epoch FROM c.paid_at - c.first_message_at)::int - 7200) END,
        c.paid_at
    FROM (SELECT *, id % 50 = 0 AS refund FROM dunning_cases) AS c
    """,
    # Lost cases, closed over the same two years.
    """
    INSERT INTO dunning_cases (provider, invoice_id, customer_id, customer_email, currency, amount_due,
        attempt_count, livemode, status, close_reason, episode, messages_sent, first_failed_at, last_failed_at,
        closed_at, created_at, updated_at)
    SELECT 'stripe', 'in_lost' || g, 'cus_lost' || g, 'lost' || g || '@example.com',
        CASE WHEN g % 10 < 7 THEN 'usd' WHEN g % 10 < 9 THEN 'eur' ELSE 'jpy' END, 900 + (g * 53) % 30000, 4,
        g % 20 <> 0, (ARRAY['void', 'uncollectible', 'canceled'])[1 + g % 3], 'lost', 1, 3,
        closed - interval '20 days', closed - interval '5 days', closed, closed - interval '20 days', closed
    FROM (SELECT g, %(now)s::timestamp - make_interval(secs => (g::bigint * 6007) % %(span)s) AS closed
          FROM generate_series(1, %(lost)s) AS g) AS x
    """,
    # Cases still open: failed within the last two weeks.
    """
    INSERT INTO dunning_cases (provider, invoice_id, customer_id, customer_email, currency, amount_due,
        attempt_count, livemode, status, episode, messages_sent, first_failed_at, last_failed_at, created_at,
        updated_at)
    SELECT 'stripe', 'in_open' || g, 'cus_open' || g, 'open' || g || '@example.com',
        CASE WHEN g % 10 < 7 THEN 'usd' WHEN g % 10 < 9 THEN 'eur' ELSE 'jpy' END, 900 + (g * 71) % 30000,
        1 + g % 3, g % 20 <> 0, 'open', 1, 1, failed, failed, failed, failed
    FROM (SELECT g, %(now)s::timestamp - make_interval(secs => (g::bigint * 613) % 1209600) AS failed
          FROM generate_series(1, %(open)s) AS g) AS x
    """,
]
SETTLE_SQL = [
    f"VACUUM ANALYZE {table}"
    for table in ("dunning_cases", "recovery_ledger", "recovery_ledger_daily", "recovery_durations_daily")
]


def seed(dsn: str, now: datetime) -> dict:
    """Fill the finance tables; returns row counts and how long it took."""
    import psycopg

    started = time.monotonic()
    params = {"now": now, "span": TWO_YEARS, "rows": LEDGER_ROWS, "lost": LOST_CASES, "open": OPEN_CASES}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in SEED_SQL:
            if "%(" in sql:
                conn.execute(sql.replace(" % ", " %% "), params)  # modulo, not a placeholder
            else:
                conn.execute(sql)
        ledger = conn.execute("SELECT count(*) FROM recovery_ledger").fetchone()[0]
        cases = conn.execute("SELECT count(*) FROM dunning_cases").fetchone()[0]
    return {"ledger_rows": ledger, "cases": cases, "seconds": round(time.monotonic() - started, 1)}


def settle(dsn: str) -> float:
    """VACUUM ANALYZE the finance tables; returns the seconds it took."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in SETTLE_SQL:
            conn.execute(sql)
    return round(time.monotonic() - started, 1)


def _views(now: datetime) -> dict[str, str]:
    """Every preset period, as the dashboard links to it, and three more views of the default period."""
    from webhook_app.finance.period import presets

    views = {
        label: f"/finance?since={p.since_date.isoformat()}&until={p.until_date.isoformat()}"
        for label, p in presets(now)
    }
    views.update(
        {"one currency (eur)": "/finance?currency=eur", "usd sorted by amount": "/finance?currency=usd&sort=-amount"}
    )
    return views


def _next_page(session: requests.Session, url: str) -> str | None:
    """The dashboard's link to the next page of the table (keyset cursor)."""
    html = session.get(url, timeout=60).text
    for match in re.finditer(r'href="([^"]*cursor=[^"]*)"', html):
        return unescape(match.group(1))
    return None


def dashboard(url: str, now: datetime) -> dict:
    """Timed dashboard requests, round-robin over the views; returns per-view and overall percentiles."""
    session = requests.Session()
    session.auth = (FINANCE_USER, FINANCE_PASSWORD)
    views = _views(now)
    second = _next_page(session, url + "/finance")
    if second:
        views["second page (cursor)"] = second
    for path in views.values():  # warm: imports, templates, connection pool, PostgreSQL's cache
        response = session.get(url + path, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    timings: dict[str, list[float]] = {name: [] for name in views}
    statuses: dict[int, int] = {}
    for _ in range(REQUESTS_PER_VIEW):
        for name, path in views.items():
            started = time.perf_counter()
            response = session.get(url + path, timeout=60)
            timings[name].append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    everything = [t for ts in timings.values() for t in ts]
    return {
        "requests": len(everything),
        "statuses": statuses,
        "p50_ms": round(_pct(everything, 50), 1),
        "p95_ms": round(_pct(everything, 95), 1),
        "max_ms": round(max(everything), 1),
        "views": {
            name: {"path": views[name], "p50_ms": round(_pct(ts, 50), 1), "p95_ms": round(_pct(ts, 95), 1)}
            for name, ts in timings.items()
        },
    }


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1]


def export_csv(url: str, master_pid: int, now: datetime) -> dict:
    """Download every row as CSV; the serving worker's RSS sampled throughout, and its peak."""
    workers = children(master_pid)
    baseline = {pid: rss_kb(pid) for pid in workers}
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample():
        while not stop.is_set():
            values = [rss_kb(pid) or 0 for pid in workers]
            samples.append((round(time.monotonic() - started, 2), max(values) if values else 0))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    path = f"/finance/recoveries.csv?since=2000-01-01&until={(now + timedelta(days=1)).date().isoformat()}"
    lines = size = 0
    try:
        with requests.get(url + path, auth=(FINANCE_USER, FINANCE_PASSWORD), stream=True, timeout=600) as response:
            status = response.status_code
            for chunk in response.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
    finally:
        stop.set()
        sampler.join()
    seconds = time.monotonic() - started
    peaks = {pid: peak_rss_kb(pid) for pid in workers}
    served_by = max(peaks, key=lambda pid: (peaks[pid] or 0) - (baseline[pid] or 0))
    return {
        "status": status,
        "rows": max(0, lines - 1),
        "bytes": size,
        "seconds": round(seconds, 1),
        "rows_per_second": round((lines - 1) / seconds) if seconds else None,
        "peak_rss_kb": peaks[served_by],
        "baseline_rss_kb": baseline[served_by],
        "worker_pid": served_by,
        "workers": len(workers),
        "rss_samples_kb": _thin(samples, 120),
    }


def _thin(samples: list, keep: int) -> list:
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    return [samples[int(i * step)] for i in range(keep)] + [samples[-1]]


def run(workdir: Path) -> list[Figure]:
    """All finance figures."""
    names = ("dashboard p95", "CSV export peak RSS")
    pg_reason = pg_available()
    if pg_reason:
        return [Figure.missing(f"finance.{i}", BENCH, n, pg_reason) for i, n in enumerate(names)]
    try:
        from webhook_app.finance.views import bp  # noqa: F401
    except Exception as exc:  # not written yet, or broken mid-edit
        reason = f"the finance blueprint is not importable ({type(exc).__name__}: {exc})"
        return [Figure.missing(f"finance.{i}", BENCH, n, reason) for i, n in enumerate(names)]
    procs = Processes(workdir)
    pg = PgDatabase("finance")
    try:
        env = base_env(
            DATABASE_URL=pg.url,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_SECRET_KEY=STRIPE_KEY,
            SECRET_KEY="bench-secret-key",
            WORKER_MODE="external",
            FINANCE_USERNAME=FINANCE_USER,
            FINANCE_PASSWORD=FINANCE_PASSWORD,
            LOG_LEVEL="WARNING",
        )
        run_cli(env, "db", "upgrade")
        now = datetime.utcnow().replace(microsecond=0)
        log(f"finance: seeding {LEDGER_ROWS:,} ledger rows and {LEDGER_ROWS + LOST_CASES + OPEN_CASES:,} cases")
        seeded = seed(pg.dsn, now)
        log(f"  seeded {seeded['ledger_rows']:,} ledger rows, {seeded['cases']:,} cases in {seeded['seconds']} s")
        started = time.monotonic()
        rebuilt = run_cli(env, "finance", "rebuild-rollups", timeout=1800)
        seeded["rebuild_seconds"] = round(time.monotonic() - started, 1)
        seeded["rebuild_output"] = rebuilt.stdout.strip()
        log(f"  {seeded['rebuild_output']} ({seeded['rebuild_seconds']} s with the CLI's start-up)")
        seeded["vacuum_seconds"] = settle(pg.dsn)
        proc, url = start_gunicorn(procs, "finance-dashboard", "webhook_app.wsgi:app", env)
        log(f"finance: dashboard, {REQUESTS_PER_VIEW} requests per view")
        board = dashboard(url, now)
        log(f"  dashboard p50 {board['p50_ms']} ms, p95 {board['p95_ms']} ms over {board['requests']} requests")
        proc.stop()
        proc, url = start_gunicorn(procs, "finance-csv", "webhook_app.wsgi:app", env)
        log("finance: CSV export of every row on a fresh server")
        export = export_csv(url, proc.pid, now)
        log(
            f"  CSV: {export['rows']:,} rows in {export['seconds']} s, worker peak RSS "
            f"{export['peak_rss_kb'] / 1024:.0f} MB (baseline {export['baseline_rss_kb'] / 1024:.0f} MB)"
        )
        proc.stop()
    finally:
        procs.stop_all()
        pg.drop()
    slowest = max(board["views"].items(), key=lambda kv: kv[1]["p95_ms"])
    return [
        Figure.measured(
            "finance.dashboard.p95",
            BENCH,
            f"dashboard p95, {LEDGER_ROWS:,} ledger rows",
            board["p95_ms"],
            "ms",
            op="<=",
            threshold=300,
            note=f"p50 {board['p50_ms']} ms over {board['requests']} requests in {len(board['views'])} "
            f"views; slowest view {slowest[0]!r} p95 {slowest[1]['p95_ms']} ms; p95 per view: "
            + ", ".join(f"{name} {v['p95_ms']:.0f}" for name, v in board["views"].items())
            + "; roll-ups filled by `finance rebuild-rollups` after seeding",
            detail={"dashboard": board, "seed": seeded},
        ),
        Figure.measured(
            "finance.csv.rss",
            BENCH,
            "CSV export of all rows: worker peak RSS",
            round(export["peak_rss_kb"] / 1024, 1),
            "MB",
            op="<=",
            threshold=150,
            note=f"{export['rows']:,} rows, {export['bytes'] / 1e6:.0f} MB in {export['seconds']} s; "
            f"baseline {export['baseline_rss_kb'] / 1024:.0f} MB; HTTP {export['status']}",
            detail={"export": export},
        ),
    ]
