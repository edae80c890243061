"""Helpers of the reliability suite: the log audit, the figures board, worker processes, database peeks.

Kept out of `conftest.py` so scenario modules can import them by name.
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import OLD_WEBHOOK_SECRET, STRIPE_KEY, WEBHOOK_SECRET
from webhook_app.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[2]

# Every credential the suite hands to the app, here or in the shared fixtures. None may reach a log line.
FINANCE_PASSWORD = "fin-pass-Zq7-reliability"
DATABASE_PASSWORD = "db-pass-Kx3-reliability"
SUITE_SECRETS = (
    WEBHOOK_SECRET,
    OLD_WEBHOOK_SECRET,
    STRIPE_KEY,
    "test-secret-key-for-links",  # tests/conftest.py base_config SECRET_KEY
    "e2e-secret-key",  # tests/e2e/conftest.py SECRET_KEY
    "loops_test_key",  # LoopsStandIn default API key
    "intercom_test_token",  # IntercomStandIn default token
    FINANCE_PASSWORD,
    DATABASE_PASSWORD,
)
# Customer addresses the suite puts in invoices live at these domains; a log line naming one leaks PII.
EMAIL_IN_SUITE = re.compile(
    r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)*(?:example\.(?:com|test|org)|reliability\.test)", re.IGNORECASE
)


# -- figures -----------------------------------------------------------------------------------------

FIGURES: list[tuple[str, str]] = []


def figure(name: str, text: str) -> str:
    """Print a scenario's figure and keep it for the end-of-run summary (shown even without -s)."""
    line = f"{name}: {text}"
    print(line)
    FIGURES.append((name, text))
    out = os.environ.get("RELIABILITY_FIGURES_FILE")
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line


# -- log audit ---------------------------------------------------------------------------------------


def leaks(text: str, secrets: Iterable[str] = SUITE_SECRETS) -> list[str]:
    """The secrets and suite customer emails found in `text` (each once)."""
    found = [s for s in secrets if s and s in text]
    found += sorted(set(EMAIL_IN_SUITE.findall(text)))
    return found


class _Collect(logging.Handler):
    """Formats every record of loggers outside the app as Python would print it, into a list."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "webhook_app" or record.name.startswith("webhook_app."):
            return  # the app's own lines are read from its real handler's output instead
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is not a leak; never break the test
            self.lines.append(f"(unformattable record from {record.name})")


class LogAudit:
    """All log output of one test: the app's JSON lines as its handler writes them, every other
    logger's lines, and the log files of the processes the test started (gunicorn, workers).

    The app's handler (`observability.configure_logging`) is reused across `create_app` calls, so its
    stream is pointed at a buffer for the duration of the test: what is checked is exactly what the
    product prints, after its own scrubbing.
    """

    def __init__(self):
        self.app_stream = io.StringIO()
        self.other = _Collect()
        self.files: list[Path] = []
        self._handler: logging.StreamHandler | None = None
        self._old_stream = None

    def start(self) -> None:
        app_logger = logging.getLogger("webhook_app")
        handler = next((h for h in app_logger.handlers if getattr(h, "_webhook_app", False)), None)
        if handler is None:
            # configure_logging() adopts a handler carrying this mark and sets its JSON formatter.
            handler = logging.StreamHandler(sys.stdout)
            handler._webhook_app = True  # type: ignore[attr-defined]
            app_logger.addHandler(handler)
        self._handler = handler
        self._old_stream = handler.setStream(self.app_stream)
        logging.getLogger().addHandler(self.other)

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.other)
        if self._handler is not None and self._old_stream is not None:
            self._handler.setStream(self._old_stream)

    def add_file(self, path: Path) -> None:
        """Also audit a process's log file (read when the test ends)."""
        self.files.append(Path(path))

    def sources(self) -> list[tuple[str, str]]:
        """(where, text) for every captured source."""
        out = [("app log lines", self.app_stream.getvalue()), ("other loggers", "\n".join(self.other.lines))]
        for path in self.files:
            try:
                out.append((path.name, path.read_text(errors="replace")))
            except FileNotFoundError:
                continue
        return out

    def line_count(self) -> int:
        return sum(text.count("\n") + (1 if text and not text.endswith("\n") else 0) for _, text in self.sources())

    def findings(self) -> list[str]:
        """One entry per leaking line: where, what leaked, and the line with the leak masked."""
        found = []
        for where, text in self.sources():
            for line in text.splitlines():
                hits = leaks(line)
                if hits:
                    masked = line
                    for hit in hits:
                        masked = masked.replace(hit, "<LEAK>")
                    found.append(f"{where}: {len(hits)} leak(s): {masked[:300]}")
        return found


AUDIT_TOTALS = {"tests": 0, "lines": 0, "leaks": 0}


# -- processes ---------------------------------------------------------------------------------------


class WorkerProcess:
    """`webhook-app worker` as its own OS process (Procfile `worker`), logging to a file."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook_app.cli", "worker"],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, no claim is released, nothing is recorded."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None


class Peek:
    """Read-only counts from the scenario's database, through its own small engine."""

    def __init__(self, database_url: str):
        self.engine = create_engine(normalize_database_url(database_url), pool_pre_ping=True, pool_size=2)

    def count(self, model, *where) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))

    def rows(self, model, *where) -> list:
        with Session(self.engine) as s:
            return s.scalars(select(model).where(*where).order_by(model.id)).all()

    def by_status(self, model) -> dict[str, int]:
        with Session(self.engine) as s:
            return dict(s.execute(select(model.status, func.count()).group_by(model.status)).all())

    def dispose(self) -> None:
        self.engine.dispose()


class Paced:
    """A bounded pool of client threads, each running `fn(item)` over a shared queue of items."""

    def __init__(self, fn: Callable, items: list, threads: int):
        self.fn, self.items, self.threads = fn, list(items), threads
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self.items:
                    return
                item = self.items.pop(0)
            try:
                self.fn(item)
            except BaseException as exc:  # surfaced by join(); a client bug must not hang the scenario
                with self._lock:
                    self.errors.append(exc)

    def start(self) -> Paced:
        self._pool = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._pool:
            t.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._pool:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._pool), f"client threads still running after {timeout:.0f}s"
        if self.errors:
            raise self.errors[0]
