"""Operating the service as a new user would, over real processes and sockets: production start-up
refusing with every missing essential named, `/readyz` under gunicorn, `webhook-app run` processing
events with its embedded worker, and the group window in real time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.conftest import ROOT_ENV_KEYS, STRIPE_KEY, WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from tests.standins import free_port
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Notification

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def post(url: str, event: dict) -> requests.Response:
    body, headers = so.signed(event, WEBHOOK_SECRET)
    return requests.post(f"{url}/webhooks/stripe", data=body, headers=headers, timeout=5)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ROOT_ENV_KEYS}
    env.update({"FLASK_SKIP_DOTENV": "1", **extra})
    return env


def test_gunicorn_in_production_refuses_to_start_naming_every_missing_essential(tmp_path):
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    env = clean_env(
        APP_ENV="production",
        PORT=str(free_port()),
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        STRIPE_SECRET_KEY=STRIPE_KEY,  # Stripe on, its webhook secret missing
        MESSAGING_PROVIDER="loops",  # its key missing
    )
    started = subprocess.run(
        [gunicorn, "--config", "gunicorn.conf.py", "webhook_app.wsgi:app"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = started.stdout + started.stderr
    assert started.returncode != 0
    assert "Traceback" not in output
    assert "APP_ENV=production: the web process will not start until these are fixed" in output
    for name in ("STRIPE_WEBHOOK_SECRET", "LOOPS_API_KEY", "SECRET_KEY", "PUBLIC_URL"):
        assert name in output, name
    assert "Booting worker" not in output  # refused in the master, before any worker forked


def test_production_with_every_essential_serves_and_is_ready(live_app, sqlite_url, loops_standin):
    app = live_app(
        sqlite_url,
        APP_ENV="production",
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops_standin.api_key,
        LOOPS_API_BASE=f"{loops_standin.url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
    )
    ready = requests.get(f"{app.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_names_a_missing_secret_under_gunicorn_in_development(live_app, sqlite_url):
    app = live_app(sqlite_url, MESSAGING_PROVIDER="console", STRIPE_WEBHOOK_SECRET="")
    ready = requests.get(f"{app.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["STRIPE_WEBHOOK_SECRET is not set: Stripe deliveries are refused (503)"]
    refused = post(app.url, so.event("invoice.payment_failed", so.invoice()))
    assert refused.status_code == 503


def notifications(database_url: str) -> list[Notification]:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return s.scalars(select(Notification).order_by(Notification.id)).all()
    finally:
        engine.dispose()


def test_webhook_app_run_serves_and_its_embedded_worker_sends(tmp_path, sqlite_url, stripe_standin):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        DATABASE_URL=sqlite_url,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_standin.base_url,
        PUBLIC_URL=url,
        SECRET_KEY="run-secret-key",
        MESSAGING_PROVIDER="console",
        WORKER_POLL_SECONDS="0.1",
        DUNNING_GROUP_WINDOW_SECONDS="0",
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "webhook_app.cli", "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook_app.cli", "run", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=20, what="webhook-app run to serve")
        inv = so.invoice(amount_due=4900, email="jane.doe@example.com")
        stripe_standin.invoices[inv["id"]] = inv
        assert post(url, so.event("invoice.payment_failed", inv)).status_code == 200
        wait_for(
            lambda: any(n.status == "sent" for n in notifications(sqlite_url)),
            timeout=20,
            what="the embedded worker to send the first message",
        )
        log.seek(0)
        text = log.read()
        assert "embedded worker started" in text
        assert "to ja***@example.com" in text and "jane.doe@example.com" not in text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_two_invoices_failing_two_seconds_apart_get_one_email(live_app, database_url, stripe_standin, loops_standin):
    app = live_app(
        database_url,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops_standin.api_key,
        LOOPS_API_BASE=f"{loops_standin.url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        DUNNING_GROUP_WINDOW_SECONDS="5",
    )
    first = so.invoice(invoice_id="in_window_1", amount_due=4900)
    second = so.invoice(invoice_id="in_window_2", amount_due=1500)
    for inv in (first, second):
        stripe_standin.invoices[inv["id"]] = inv
    assert post(app.url, so.event("invoice.payment_failed", first)).status_code == 200
    time.sleep(2)
    assert post(app.url, so.event("invoice.payment_failed", second)).status_code == 200

    [email] = wait_for(lambda: loops_standin.messages, timeout=20, what="the grouped email")
    time.sleep(4)  # past the second invoice's own window: nothing more goes out
    assert len(loops_standin.messages) == 1
    data = email["body"]["dataVariables"]
    assert data["invoiceCount"] == 2
    assert {line["invoiceId"] for line in data["invoices"]} == {"in_window_1", "in_window_2"}
