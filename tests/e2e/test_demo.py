"""`make demo` (`python -m demo`): a person with no Stripe account fails a payment, sees the email in
the console, opens the link, pays on the stand-in portal and finds the recovery on /finance."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT_ENV_KEYS
from tests.standins import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}


def demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ROOT_ENV_KEYS}
    env.update(extra)
    return env


def test_the_demo_walks_through_the_whole_flow_without_any_account(tmp_path):
    app_port, stripe_port, loops_port = free_port(), free_port(), free_port()
    app, stripe, loops = (f"http://127.0.0.1:{p}" for p in (app_port, stripe_port, loops_port))
    # The demo must not use the operator's keys: give it some it must ignore.
    env = demo_env(STRIPE_SECRET_KEY="sk_live_must_not_be_used", DATABASE_URL="postgresql://nowhere/db")
    out = open(tmp_path / "demo.out", "w+")
    ports = ["--port", str(app_port), "--stripe-port", str(stripe_port), "--loops-port", str(loops_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", *ports],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )

    def printed() -> str:
        out.flush()
        out.seek(0)
        return out.read()

    try:
        wait_for(lambda: "Ctrl-C stops everything" in printed(), timeout=30, what="the demo to start")
        intro = printed()
        assert f'open {stripe} and press "Fail a payment"' in intro
        assert f"{app}/finance (user demo, password demo)" in intro

        failed = requests.post(f"{stripe}/demo/fail", json={"email": "jane@example.com"}, timeout=10).json()
        assert failed["webhook_status"] == 200
        [message] = wait_for(lambda: requests.get(f"{loops}/demo/messages", timeout=5).json(), what="the email")
        link = message["body"]["dataVariables"]["updatePaymentUrl"]
        assert link.startswith(f"{app}/r/")
        wait_for(lambda: link in printed(), what="the email in the console")
        assert "To: jane@example.com" in printed() and "$49.00" in printed()

        click = requests.get(link, headers=BROWSER, allow_redirects=False, timeout=10)
        assert click.status_code == 303 and click.headers["Location"].startswith(f"{stripe}/p/session/")
        portal = requests.get(click.headers["Location"], timeout=10)
        assert "Save card and pay" in portal.text
        action = re.search(r'action="([^"]+)"', portal.text).group(1)
        paid = requests.post(f"{stripe}{action}", allow_redirects=False, timeout=10)
        assert paid.status_code == 302 and paid.headers["Location"] == f"{app}/finance"

        def recoveries() -> list[dict]:
            response = requests.get(f"{app}/finance/recoveries.json", auth=("demo", "demo"), timeout=5)
            return response.json()["data"] if response.ok else []

        [row] = wait_for(recoveries, what="the recovery on /finance")
        assert row["invoice_id"] == failed["invoice"] and row["attribution"] == "link_click"
        dashboard = requests.get(f"{app}/finance", auth=("demo", "demo"), timeout=10)
        assert dashboard.status_code == 200 and "$49.00" in dashboard.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        out.close()
    text = (tmp_path / "demo.out").read_text()
    assert "demo stopped" in text and "Traceback" not in text
    folder = re.search(r"SQLite in (\S+),", text).group(1)
    assert not Path(folder).exists()  # the temporary database went with it


def test_the_demo_refuses_to_start_in_production():
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--port", str(free_port())],
        cwd=ROOT,
        env=demo_env(APP_ENV="production"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "refusing to start the demo with APP_ENV=production" in result.stderr
    assert "webhook-app demo:" not in result.stdout


def test_the_demo_needs_only_the_runtime_dependencies():
    """`make demo` installs the app's dependencies only; the shared stand-ins it imports need no more."""
    dev_only = ("pytest", "_pytest", "requests_mock", "hypothesis", "playwright", "mypy")
    probe = f"import sys, demo.__main__; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({dev_only!r})))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=demo_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
