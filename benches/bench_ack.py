"""Ack path: the app's `POST /webhooks/stripe` against a floor, under the Procfile's gunicorn config.

Servers, one at a time, each under `gunicorn --config gunicorn.conf.py` (bound to 127.0.0.1):
- the floor (`benches/floor_app.py`: verify the signature, answer 200);
- the app on SQLite and on PostgreSQL with `WORKER_MODE=external` (the Procfile's worker process type
  runs the worker, so the web process only acknowledges);
- the app on SQLite and on PostgreSQL in the shipped default, `WORKER_MODE=embedded`: the web process
  also runs the worker, which drains the same deliveries while they arrive (re-reading each invoice from
  a stand-in Stripe and sending through a stand-in Loops, both answering in 100 ms, Loops paced at its
  default rate): the billing-cycle burst, when the web process is busiest and the worker has most to do;
- the naive design (`benches/naive_app.py`), against stand-in Stripe and Loops with 100 ms latency.

Load: Debian's `wrk` with `ack.lua`, cycling through distinct `invoice.payment_failed` deliveries signed
just before each run (signatures carry a timestamp checked with a 300 s tolerance). Two phases:
1. saturation: a fixed number of connections as fast as the server answers -> throughput;
2. fixed offered load: the same request rate against every server (half the slowest app's saturated
   throughput) -> p99 latency at the same offered load.
Each phase runs in ROUNDS rounds, every server once per round (floor, SQLite, PostgreSQL, each freshly
started and warmed for 2 s): load from anything else on the machine then weighs on all of them alike.
A ratio is computed per round (app against that round's floor) and the median is the figure. The
server's CPU time per request (gunicorn master and workers, from /proc) is kept with each run.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benches.common import (
    BENCHES,
    LOOPS_KEY,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    Figure,
    PgDatabase,
    Processes,
    base_env,
    free_port,
    log,
    pg_available,
    run_cli,
    start_gunicorn,
    wait_http,
)

BENCH = "Ack path"
CONNECTIONS = 32
WRK_THREADS = 1
ROUNDS = 3
MIN_ROUNDS = 2  # rounds every server must complete for the figures to count
SATURATION_SECONDS = 10
FIXED_SECONDS = 10
MAX_BODIES_PER_SECOND = 4000  # bodies generated per second of a saturation run: more than the floor answers
NAIVE_LATENCY = 0.1
WORKER_LATENCY = 0.1  # the stand-ins' answer time for the embedded worker's calls


# -- deliveries --------------------------------------------------------------------------------------
def write_bodies(path: Path, count: int, run: str) -> None:
    """`count` distinct signed `invoice.payment_failed` deliveries, one per line: "<signature>\\t<body>"."""
    from tests.fixtures.stripe_objects import event, invoice, signed

    now = int(time.time())
    with open(path, "w") as out:
        for i in range(count):
            inv = invoice(
                invoice_id=f"in_{run}_{i:07d}",
                customer=f"cus_{run}_{i:07d}",
                email=f"customer{i}@example.com",
                attempt_count=1,
                next_payment_attempt=now + 3 * 86400,
            )
            body, headers = signed(
                event("invoice.payment_failed", inv, event_id=f"evt_{run}_{i:07d}", created=now),
                WEBHOOK_SECRET,
                timestamp=now,
            )
            out.write(headers["Stripe-Signature"] + "\t" + body.decode() + "\n")


def invoices_for(run: str, count: int) -> list[dict]:
    """The invoices the naive run's deliveries point at, as the Stripe stand-in serves them."""
    from tests.fixtures.stripe_objects import invoice

    now = int(time.time())
    return [
        invoice(
            invoice_id=f"in_{run}_{i:07d}",
            customer=f"cus_{run}_{i:07d}",
            email=f"customer{i}@example.com",
            attempt_count=1,
            next_payment_attempt=now + 3 * 86400,
        )
        for i in range(count)
    ]


# -- wrk ---------------------------------------------------------------------------------------------
def wrk(
    url: str,
    bodies: Path,
    *,
    seconds: int,
    rate: float = 0,
    path: str = "/webhooks/stripe",
    connections: int = CONNECTIONS,
) -> dict:
    """One wrk run; returns its counts, throughput (req/s) and latency percentiles (ms)."""
    env = {
        **os.environ,
        "BENCH_BODIES": str(bodies),
        "BENCH_PATH": path,
        "BENCH_RATE": str(rate),
        "BENCH_THREADS": str(WRK_THREADS),
        "BENCH_CONNECTIONS": str(connections),
    }
    cmd = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCHES / "ack.lua"),
        url,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len("BENCH_RESULT ") :])
    if result["requests"] == 0:
        raise RuntimeError(f"no answer from {url} in {seconds} s (errors {result['errors']})")
    seconds_run = result["duration_us"] / 1e6
    if result["threads_stopped_by_count"]:
        seconds_run = result["count_span_ms"] / 1000  # every body used before -d ran out
    result["seconds"] = round(seconds_run, 3)
    result["throughput"] = round(result["requests"] / seconds_run, 1)
    errors = result["errors"]
    # Connection errors and timeouts are answers that never came: count them as non-2xx too.
    result["failed"] = result["non2xx"] + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    result["latency_ms"] = {k: round(v / 1000, 2) for k, v in result.pop("latency_us").items()}
    result["offered_rate"] = rate or None
    result["connections"] = connections
    return result


def _load(
    url: str,
    workdir: Path,
    run: str,
    *,
    seconds: int,
    rate: float = 0,
    path: str = "/webhooks/stripe",
    bodies: int | None = None,
) -> dict:
    count = bodies or int((rate * 1.3 if rate else MAX_BODIES_PER_SECOND) * seconds) + 1000
    file = workdir / f"bodies-{run}.txt"
    write_bodies(file, count, run)  # signed now: well inside the 300 s tolerance for the run
    try:
        result = wrk(url, file, seconds=seconds, rate=rate, path=path)
    finally:
        file.unlink(missing_ok=True)
    log(
        f"  {run}: {result['throughput']:.0f} req/s, p50 {result['latency_ms']['p50']} ms, "
        f"p99 {result['latency_ms']['p99']} ms, failed {result['failed']} ({result['statuses'] or 'all 2xx'})"
    )
    return result


# -- servers -----------------------------------------------------------------------------------------
def _app_env(database_url: str, **extra: str) -> dict:
    settings = dict(
        DATABASE_URL=database_url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        SECRET_KEY="bench-secret-key",
        WORKER_MODE="external",
    )
    return base_env(**{**settings, **extra})


def _stored_events(database_url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from webhook_app.config import normalize_database_url
    from webhook_app.models import Event

    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Event))
    finally:
        engine.dispose()


def _cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system) of gunicorn's master and every process under it so far: its web
    processes, the embedded worker process one of them starts, and the ones that exited (a parent
    reaps its children, so theirs is in its cutime/cstime; `max_requests` recycles web processes)."""
    from benches.common import children

    tick = os.sysconf("SC_CLK_TCK")

    def ticks(pid: int) -> int:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return 0
        own = sum(int(x) for x in text[text.rindex(")") + 2 :].split()[11:15])  # utime stime cutime cstime
        return own + sum(ticks(child) for child in children(pid))

    return ticks(master_pid) / tick


@dataclass(frozen=True)
class Server:
    """One server of the rounds: the floor (no database) or the app with its database and extra env."""

    name: str
    database_url: str | None = None
    env: dict = field(default_factory=dict)


def _server(procs: Processes, server: Server, tag: str):
    if server.database_url is None:
        return start_gunicorn(
            procs, f"ack-floor-{tag}", "benches.floor_app:app", base_env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
        )
    env = _app_env(server.database_url, **server.env)
    return start_gunicorn(procs, f"ack-app-{server.name}-{tag}", "webhook_app.wsgi:app", env)


def _measured(procs: Processes, workdir: Path, server: Server, tag: str, *, seconds: int, rate: float = 0) -> dict:
    """Start the server, warm it, run one load against it with its CPU time counted, stop it."""
    proc, url = _server(procs, server, tag)
    name = server.name
    _load(url, workdir, f"w{tag}{name}", seconds=2, rate=rate)  # imports, pools, SQLite's WAL file
    cpu = _cpu_seconds(proc.pid)
    result = _load(url, workdir, f"{tag}{name}", seconds=seconds, rate=rate)
    result["server_cpu_ms_per_request"] = round((_cpu_seconds(proc.pid) - cpu) * 1000 / max(result["requests"], 1), 3)
    proc.stop()
    return result


def _median_run(runs: list[dict | None], key) -> dict:
    """The run whose `key` is the median (so its other numbers come from the same run)."""
    ordered = sorted((r for r in runs if r is not None), key=key)
    return ordered[len(ordered) // 2]


def _attempt(procs: Processes, workdir: Path, server: Server, tag: str, **kwargs) -> dict | None:
    """`_measured`, tried twice; None when both fail (the round is then left out, and says so)."""
    name = server.name
    for attempt in (1, 2):
        try:
            return _measured(procs, workdir, server, tag, **kwargs)
        except Exception as exc:  # a stalled machine, a server that did not start: retry, then drop the round
            procs.stop_all()
            log(
                f"  {tag}{name}: failed ({type(exc).__name__}: {str(exc)[:160]}); "
                + ("retrying in 10 s" if attempt == 1 else "round left out")
            )
            time.sleep(10)
    return None


def _rounds(procs: Processes, workdir: Path, servers: list[Server], phase: str, seconds: int, rate: float = 0) -> dict:
    """ROUNDS rounds of every server in turn; {name: [result or None per round]}."""
    out: dict[str, list] = {server.name: [] for server in servers}
    for round_ in range(1, ROUNDS + 1):
        for server in servers:
            what = f"at a fixed {rate:.0f} req/s" if rate else f"saturating ({CONNECTIONS} connections)"
            log(f"ack path: round {round_}/{ROUNDS}, {server.name} {what}, {seconds} s")
            out[server.name].append(_attempt(procs, workdir, server, f"{phase}{round_}", seconds=seconds, rate=rate))
    valid = [i for i in range(ROUNDS) if all(out[server.name][i] is not None for server in servers)]
    if len(valid) < MIN_ROUNDS:
        raise RuntimeError(f"only {len(valid)} of {ROUNDS} {phase} rounds completed (need {MIN_ROUNDS})")
    # A round counts only when every server completed it: ratios compare runs of the same round.
    return {server.name: [out[server.name][i] if i in valid else None for i in range(ROUNDS)] for server in servers}


def _standins(procs: Processes, latency: float, tag: str, *, synthesize: bool) -> tuple[str, str]:
    """Stand-in Stripe and Loops processes answering in `latency` s; their base URLs. With `synthesize`,
    the Stripe stand-in answers for every delivery's invoice without loading 40,000 of them."""
    from benches.common import PYTHON

    urls = []
    for kind in ("stripe", "loops"):
        port = free_port()
        args = [PYTHON, "-m", "benches.standin_server", "--kind", kind, "--port", str(port), "--latency", str(latency)]
        if kind == "stripe" and synthesize:
            args.append("--synthesize-invoices")
        proc = procs.start(f"{tag}-{kind}-standin", args, base_env())
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_bench/healthz", proc)
        urls.append(url)
    return urls[0], urls[1]


def _outside_env(stripe_url: str, loops_url: str) -> dict:
    """Settings pointing the app's Stripe and Loops at the stand-ins."""
    return dict(
        STRIPE_API_BASE=stripe_url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=LOOPS_KEY,
        LOOPS_API_BASE=loops_url + "/api",
        LOOPS_TRANSACTIONAL_ID="tx_bench",
        PORTAL_RETURN_URL="https://app.example.test/billing",
        PUBLIC_URL="https://recover.example.test",
    )


def run(workdir: Path) -> list[Figure]:
    """All ack-path figures."""
    if shutil.which("wrk") is None:
        reason = "wrk is not installed (make bench installs it with apt-get)"
        return [Figure.missing("ack", BENCH, "all ack-path figures", reason)]
    pg_reason = pg_available()
    procs = Processes(workdir)
    pgs: list[PgDatabase] = []
    stored: dict[str, int] = {}
    naive: dict | None = None
    try:
        # The embedded worker's outside world: stand-in Stripe and Loops, Loops at its default pace.
        worker = dict(
            WORKER_MODE="embedded", **_outside_env(*_standins(procs, WORKER_LATENCY, "ack-worker", synthesize=True))
        )
        servers = [
            Server("floor"),
            Server("sqlite", f"sqlite:///{workdir / 'ack.sqlite3'}"),
            Server("sqlite+worker", f"sqlite:///{workdir / 'ack-worker.sqlite3'}", worker),
        ]
        if pg_reason is None:
            pgs = [PgDatabase("ack"), PgDatabase("ackworker")]
            servers.append(Server("postgresql", pgs[0].url))
            servers.append(Server("postgresql+worker", pgs[1].url, worker))
        for server in servers:
            if server.database_url is not None:
                run_cli(_app_env(server.database_url), "db", "upgrade")
        # Rounds, each server in turn: other load on the machine then weighs on all of them alike.
        sat = _rounds(procs, workdir, servers, "sat", SATURATION_SECONDS)
        # The same offered load for every server: half of the slowest external-worker app's (median)
        # saturated throughput (the embedded ones are measured at that same rate).
        apps = [n for n in sat if n != "floor" and not n.endswith("+worker")]
        rate = max(10.0, round(0.5 * min(statistics.median(r["throughput"] for r in sat[n] if r) for n in apps), -1))
        fixed = _rounds(procs, workdir, servers, "fix", FIXED_SECONDS, rate)
        for server in servers:
            if server.database_url is not None:
                stored[server.name] = _stored_events(server.database_url)
        try:
            naive = _naive(procs, workdir)
        except Exception as exc:  # the comparison is worth having, but not worth losing the rest for
            procs.stop_all()
            naive = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        procs.stop_all()
        for pg in pgs:
            pg.drop()
    return _figures(sat, fixed, stored, naive, rate, pg_reason)


def _naive(procs: Processes, workdir: Path) -> dict:
    """The naive design at saturation, against stand-ins answering in 100 ms."""
    stripe_url, loops_url = _standins(procs, NAIVE_LATENCY, "naive", synthesize=False)
    count = 6000  # more than 16 handler threads can get through at >= 300 ms each in the run
    runs = ("warmnaive", "satnaive")
    for run_id in runs:
        invoices = invoices_for(run_id, count)
        for i in range(0, count, 1000):
            requests.post(stripe_url + "/_bench/invoices", json=invoices[i : i + 1000], timeout=30).raise_for_status()
    database_url = f"sqlite:///{workdir / 'naive.sqlite3'}"
    env = _app_env(
        database_url,
        **_outside_env(stripe_url, loops_url),
        # No client-side limit: the naive figure is its best case (real Loops allows ~10 req/s).
        LOOPS_RATE_PER_SECOND="100000",
        LOG_LEVEL="WARNING",
    )
    run_cli(env, "db", "upgrade")
    proc, url = start_gunicorn(procs, "ack-naive", "benches.naive_app:app", env)
    log(f"ack path: naive design (inline sends, stand-ins at {NAIVE_LATENCY * 1000:.0f} ms), {SATURATION_SECONDS} s")
    _load(url, workdir, "warmnaive", seconds=3, path="/naive/webhooks/stripe", bodies=count)
    result = _load(url, workdir, "satnaive", seconds=SATURATION_SECONDS, path="/naive/webhooks/stripe", bodies=count)
    result["loops_messages"] = requests.get(loops_url + "/_bench/stats", timeout=5).json()["messages"]
    proc.stop()  # its stand-ins stop with the others when the section ends
    return result


def _figures(sat: dict, fixed: dict, stored: dict, naive: dict, rate: float, pg_reason: str | None) -> list[Figure]:
    by_throughput = lambda r: r["throughput"]  # noqa: E731
    by_p99 = lambda r: r["latency_ms"]["p99"]  # noqa: E731
    floor = _median_run(sat["floor"], by_throughput)
    floor_fixed = _median_run(fixed["floor"], by_p99)
    dropped = {phase: sum(r is None for r in runs["floor"]) for phase, runs in (("saturation", sat), ("fixed", fixed))}
    rounds_note = (
        ""
        if not any(dropped.values())
        else f"; rounds left out (a server failed twice): {dropped['saturation']} saturated, {dropped['fixed']} fixed"
    )
    figures = [
        Figure.measured(
            "ack.floor.throughput",
            BENCH,
            "floor: throughput, saturated (median of rounds)",
            floor["throughput"],
            "req/s",
            note=f"CPU {floor['server_cpu_ms_per_request']} ms/request; p99 at {rate:.0f} req/s "
            f"{floor_fixed['latency_ms']['p99']:.1f} ms{rounds_note}",
            detail={"saturation_rounds": sat["floor"], "fixed_rounds": fixed["floor"], "rounds_left_out": dropped},
        ),
    ]
    targets = (
        ("sqlite", "SQLite", 0.8, 2),
        ("postgresql", "PostgreSQL", 0.7, 2),
        ("sqlite+worker", "SQLite, embedded worker", 0.6, 3),
        ("postgresql+worker", "PostgreSQL, embedded worker", 0.6, 3),
    )
    for name, label, ratio, p99_limit in targets:
        key = f"ack.{name.replace('+worker', '_embedded')}"
        if name not in sat:
            for what, op, threshold in (
                ("throughput_ratio", ">=", ratio),
                ("p99_ratio", "<=", p99_limit),
                ("non2xx", "==", 0),
            ):
                figures.append(
                    Figure.missing(
                        f"{key}.{what}",
                        BENCH,
                        f"{label}: {what.replace('_', ' ')}",
                        pg_reason or "not run",
                        op=op,
                        threshold=threshold,
                    )
                )
            continue
        # Ratios per round (each app run next to its own round's floor run), then the median.
        ratios = [a["throughput"] / f["throughput"] for a, f in zip(sat[name], sat["floor"], strict=False) if a and f]
        p99_ratios = [
            a["latency_ms"]["p99"] / max(f["latency_ms"]["p99"], 0.001)
            for a, f in zip(fixed[name], fixed["floor"], strict=False)
            if a and f
        ]
        s = _median_run(sat[name], by_throughput)
        f = _median_run(fixed[name], by_p99)
        runs = [r for r in sat[name] + fixed[name] if r]
        failed = sum(r["failed"] for r in runs)
        total = sum(r["requests"] for r in runs)
        figures.append(
            Figure.measured(
                f"{key}.throughput_ratio",
                BENCH,
                f"{label}: throughput / floor",
                round(statistics.median(ratios), 3),
                "×",
                op=">=",
                threshold=ratio,
                note=f"{s['throughput']:.0f} vs {floor['throughput']:.0f} req/s; rounds "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f"; CPU {s['server_cpu_ms_per_request']} vs {floor['server_cpu_ms_per_request']} ms/request",
                detail={"saturation_rounds": sat[name], "ratios": ratios},
            )
        )
        figures.append(
            Figure.measured(
                f"{key}.p99_ratio",
                BENCH,
                f"{label}: p99 / floor p99, both at {rate:.0f} req/s",
                round(statistics.median(p99_ratios), 2),
                "×",
                op="<=",
                threshold=p99_limit,
                note=f"p99 {f['latency_ms']['p99']:.1f} vs {floor_fixed['latency_ms']['p99']:.1f} ms, p50 "
                f"{f['latency_ms']['p50']:.1f} vs {floor_fixed['latency_ms']['p50']:.1f} ms; achieved "
                f"{f['throughput']:.0f} req/s; rounds " + ", ".join(f"{r:.2f}" for r in p99_ratios),
                detail={"fixed_rounds": fixed[name], "ratios": p99_ratios, "offered_rate": rate},
            )
        )
        figures.append(
            Figure.measured(
                f"{key}.non2xx",
                BENCH,
                f"{label}: non-2xx answers (all runs)",
                failed,
                "",
                op="==",
                threshold=0,
                note=f"of {total:,} requests; {stored.get(name, 0):,} events stored (warm-ups included)",
                detail={"stored_events": stored.get(name)},
            )
        )
    if naive is None or "error" in naive:
        reason = (naive or {}).get("error", "not run")
        figures.append(Figure.missing("ack.naive.throughput", BENCH, "naive design: throughput", reason))
        return figures
    figures.append(
        Figure.measured(
            "ack.naive.throughput",
            BENCH,
            "naive design (inline sends, 100 ms stand-ins): throughput",
            naive["throughput"],
            "req/s",
            note=f"{naive['throughput'] / floor['throughput']:.3f} × floor; {naive['failed']} non-2xx; "
            f"{naive.get('loops_messages', 0):,} messages sent inline",
            detail={"saturation": naive},
        )
    )
    figures.append(
        Figure.measured(
            "ack.naive.p99",
            BENCH,
            "naive design: p99 latency, saturated",
            naive["latency_ms"]["p99"],
            "ms",
            note=(
                f"p50 {naive['latency_ms']['p50']:.0f} ms; "
                f"the floor's saturated p99 {floor['latency_ms']['p99']:.0f} ms"
            ),
            detail={},
        )
    )
    return figures
