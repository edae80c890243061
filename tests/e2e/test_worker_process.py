"""The worker as its own process (Procfile `worker`): SIGTERM finishes the item in hand and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT_ENV_KEYS, base_config
from tests.e2e.conftest import ROOT
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_sigterm_stops_the_worker_cleanly(sqlite_url):
    env = {k: v for k, v in os.environ.items() if k not in ROOT_ENV_KEYS}
    env.update(base_config(sqlite_url, WORKER_POLL_SECONDS="0.1"))
    subprocess.run(
        [sys.executable, "-m", "webhook_app.cli", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook_app.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        wait_for(
            lambda: lines.append(proc.stdout.readline()) or any("worker running" in ln for ln in lines),
            what="the worker to start",
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "worker stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
