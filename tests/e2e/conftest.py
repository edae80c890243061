"""End-to-end fixtures: stand-in Stripe/Loops/Intercom on real sockets, the app under gunicorn."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.standins import free_port, serve
from tests.standins.intercom import IntercomStandIn
from tests.standins.loops import LoopsStandIn
from tests.standins.stripe import StripeStandIn
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(standin):
    """Serve a stand-in on a real socket for one test; its `url` is set while it runs."""
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


@pytest.fixture
def stripe_standin():
    with serving(StripeStandIn()) as standin:
        standin.base_url = standin.url  # portal session URLs point back at the stand-in
        yield standin


@pytest.fixture
def loops_standin():
    with serving(LoopsStandIn()) as standin:
        yield standin


@pytest.fixture
def intercom_standin():
    with serving(IntercomStandIn()) as standin:
        yield standin


class LiveApp:
    """The app served by gunicorn (the Procfile's command) on a real port."""

    def __init__(self, env: dict, tmp_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # FLASK_SKIP_DOTENV: a developer's .env in the checkout must not reach the app under test.
        self.env = {**os.environ, "PORT": str(self.port), "PUBLIC_URL": self.url, "FLASK_SKIP_DOTENV": "1", **env}
        self.log = open(tmp_path / f"gunicorn-{self.port}.log", "w+")
        self.proc: subprocess.Popen | None = None

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """Run `webhook-app <args>` with the app's environment."""
        return subprocess.run(
            [sys.executable, "-m", "webhook_app.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> LiveApp:
        upgrade = self.command("db", "upgrade")
        assert upgrade.returncode == 0, upgrade.stderr
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        self.proc = subprocess.Popen(
            [gunicorn, "--config", "gunicorn.conf.py", "webhook_app.wsgi:app"],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, timeout=20, what="gunicorn to serve /healthz")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise AssertionError(f"gunicorn exited: {self.log.read()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def live_app(tmp_path, stripe_standin):
    """Start the app under gunicorn with the given extra env; stopped after the test."""
    apps: list[LiveApp] = []

    def _start(database_url: str, **env: str) -> LiveApp:
        base = {
            "DATABASE_URL": database_url,
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stripe_standin.base_url,
            "SECRET_KEY": "e2e-secret-key",
            "PORTAL_RETURN_URL": "https://app.example.test/billing",
            "WORKER_MODE": "embedded",
            "WORKER_POLL_SECONDS": "0.1",
            "WORKER_RETRY_BASE_SECONDS": "0.2",
            "WEB_CONCURRENCY": "2",
            "COMPANY_NAME": "Acme Cloud",
            "DUNNING_GROUP_WINDOW_SECONDS": "0",
        }
        app = LiveApp({**base, **env}, tmp_path)
        apps.append(app)
        return app.start()

    yield _start
    for app in apps:
        app.stop()
