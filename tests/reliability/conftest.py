"""Fixtures of the reliability suite: a log audit around every test, and the live stack for scenarios.

Every test here runs inside `log_audit`: all log output it causes (the app's JSON lines as the app's
handler prints them, every other logger, and the log files of gunicorn and worker processes it starts)
is searched for the suite's secrets and customer emails when the test ends; a hit fails the test.
Figures printed by scenarios are repeated in the terminal summary, so a plain run shows them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.e2e.conftest import LiveApp
from tests.reliability.support import AUDIT_TOTALS, FIGURES, LogAudit, WorkerProcess
from tests.standins import Faults, serve
from tests.standins.loops import LoopsStandIn
from tests.standins.stripe import StripeStandIn


@pytest.fixture(autouse=True)
def log_audit():
    """Capture all log output of the test; fail it if a secret or a customer email shows up."""
    audit = LogAudit()
    audit.start()
    try:
        yield audit
    finally:
        audit.stop()
    findings = audit.findings()
    AUDIT_TOTALS["tests"] += 1
    AUDIT_TOTALS["lines"] += audit.line_count()
    AUDIT_TOTALS["leaks"] += len(findings)
    assert not findings, "secrets or customer emails in the log output:\n" + "\n".join(findings[:20])


def pytest_terminal_summary(terminalreporter):
    """Repeat the scenario figures and the log audit's totals at the end of the run."""
    if not FIGURES and not AUDIT_TOTALS["tests"]:
        return
    terminalreporter.section("reliability figures")
    for name, text in FIGURES:
        terminalreporter.write_line(f"{name}: {text}")
    terminalreporter.write_line(
        f"log audit: {AUDIT_TOTALS['tests']} tests, {AUDIT_TOTALS['lines']} log lines searched, "
        f"{AUDIT_TOTALS['leaks']} with a secret or a customer email"
    )


class Stack:
    """Stand-in Stripe and Loops on real sockets, the app under gunicorn, and worker processes.

    Everything listens on 127.0.0.1 and is stopped when the test ends; every process log joins the
    log audit.
    """

    def __init__(self, tmp_path: Path, audit: LogAudit):
        self.tmp_path = tmp_path
        self.audit = audit
        self._served = []
        self.apps: list[LiveApp] = []
        self.workers: list[WorkerProcess] = []
        self.stripe: StripeStandIn | None = None
        self.loops: LoopsStandIn | None = None

    def start_standins(self, stripe_faults: Faults | None = None, loops_faults: Faults | None = None) -> None:
        self.stripe = StripeStandIn(stripe_faults)
        served = serve(self.stripe.app)
        self.stripe.base_url = served.url
        self.loops = LoopsStandIn(faults=loops_faults)
        loops_served = serve(self.loops.app)
        self.loops.url = loops_served.url
        self._served += [served, loops_served]

    def env(self, database_url: str, **overrides) -> dict:
        """The environment of every process of the scenario (web and workers)."""
        env = {
            "DATABASE_URL": database_url,
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": self.stripe.base_url,
            "SECRET_KEY": "e2e-secret-key",
            "PORTAL_RETURN_URL": "https://app.example.test/billing",
            "MESSAGING_PROVIDER": "loops",
            "LOOPS_API_KEY": self.loops.api_key,
            "LOOPS_API_BASE": f"{self.loops.url}/api",
            "LOOPS_TRANSACTIONAL_ID": "tx_recovery",
            # The stand-in has no per-team limit; the real 10 req/s would only make the run longer.
            "LOOPS_RATE_PER_SECOND": "500",
            # One message per failure episode: later reminders (days away) are the cadence tests' subject.
            "DUNNING_CADENCE_DAYS": "0",
            "DUNNING_FINAL_NOTICE_DAYS": "0",
            "QUIET_HOURS": "off",
            "WORKER_MODE": "external",
            "WORKER_POLL_SECONDS": "0.1",
            "WORKER_RETRY_BASE_SECONDS": "0.2",
            "WORKER_RETRY_MAX_SECONDS": "2",
            "WORKER_LEASE_SECONDS": "5",
            "WEB_CONCURRENCY": "2",
            "COMPANY_NAME": "Acme Cloud",
            "LOG_LEVEL": "INFO",
            "DUNNING_GROUP_WINDOW_SECONDS": "0",
        }
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def web(self, database_url: str, **overrides) -> LiveApp:
        """gunicorn with the Procfile's config on a free port (runs `db upgrade` first)."""
        app = LiveApp(self.env(database_url, **overrides), self.tmp_path)
        self.apps.append(app)
        self.audit.add_file(Path(app.log.name))
        return app.start()

    def worker(self, app: LiveApp, name: str, **overrides) -> WorkerProcess:
        """A `webhook-app worker` process with the app's environment (plus `overrides`)."""
        env = {**app.env, **{k: str(v) for k, v in overrides.items()}}
        path = self.tmp_path / f"worker-{name}.log"
        self.audit.add_file(path)
        worker = WorkerProcess(env, path).start()
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for app in self.apps:
            app.stop()
        for served in self._served:
            served.stop()


@pytest.fixture
def stack(tmp_path, log_audit):
    """The live stack for a scenario; everything it started is stopped afterwards."""
    s = Stack(tmp_path, log_audit)
    try:
        yield s
    finally:
        s.close()
