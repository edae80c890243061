"""Shared plumbing for the benchmarks: processes, ports, memory readings, databases, figures.

Every process a benchmark starts is tracked and stopped by its own pid (never by name); every load is
bounded in count and time; every target is 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
RESULTS = BENCHES / "results"
PYTHON = sys.executable
BIN = Path(sys.executable).parent

WEBHOOK_SECRET = "whsec_bench_0123456789abcdef"
STRIPE_KEY = "sk_test_bench0123456789abcdef"
LOOPS_KEY = "loops_test_key"  # what the Loops stand-in accepts
FINANCE_USER, FINANCE_PASSWORD = "finance", "bench-finance-password"


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll until `predicate()` is truthy; raise with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


# -- processes ---------------------------------------------------------------------------------------
class Proc:
    """A child process with its output in a log file; `stop()` ends it (and only it) by pid."""

    def __init__(self, name: str, args: list[str], env: dict, logdir: Path, cwd: Path = ROOT):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.proc.pid
        self.rusage = None

    def _reap(self) -> bool:
        """Reap the process if it exited (wait4 keeps its rusage: `ru_maxrss` is its peak RSS in kB)."""
        if self.proc.returncode is not None:
            return True
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid != self.pid:
            return False
        self.rusage = rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return True

    def alive(self) -> bool:
        return not self._reap()

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def wait(self, timeout: float) -> int:
        """Wait for exit; returns the exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap():
                self._log.flush()
                return self.proc.returncode
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} still running after {timeout:g}s")

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
        if self.alive():
            try:
                os.kill(self.pid, sig)
                self.wait(grace)
            except TimeoutError:
                os.kill(self.pid, signal.SIGKILL)
                self.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


class Processes:
    """Tracks what a benchmark started, so everything is stopped even when it fails half-way."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict) -> Proc:
        proc = Proc(name, args, env, self.logdir)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        self.started.clear()


def base_env(**extra: str) -> dict:
    """The environment of a child: ours, with the repo importable and the venv's scripts first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "LOOPS_", "INTERCOM_", "SENTRY_", "FINANCE_", "WORKER_", "DATABASE_URL"))
    }
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["FLASK_SKIP_DOTENV"] = "1"  # a developer's .env must not change what is measured
    env["DUNNING_GROUP_WINDOW_SECONDS"] = "0"  # messages due at once, as the targets assume
    env.update(extra)
    return env


def gunicorn_cmd(app_spec: str, port: int) -> list[str]:
    """The Procfile's web command (same `gunicorn.conf.py`), bound to 127.0.0.1 only."""
    gunicorn = shutil.which("gunicorn", path=str(BIN)) or "gunicorn"
    return [gunicorn, "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app_spec]


def cli_cmd(*args: str) -> list[str]:
    """`webhook-app <args>` with this interpreter."""
    return [PYTHON, "-m", "webhook_app.cli", *args]


def run_cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(cli_cmd(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"webhook-app {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    def ok():
        proc.check_alive()
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    wait_for(ok, timeout, f"{proc.name} to answer {url}")


def start_gunicorn(procs: Processes, name: str, app_spec: str, env: dict) -> tuple[Proc, str]:
    """Start `app_spec` under the Procfile's gunicorn config; returns the process and its base URL."""
    port = free_port()
    proc = procs.start(name, gunicorn_cmd(app_spec, port), {**env, "PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    return proc, url


# -- memory ------------------------------------------------------------------------------------------
def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def rss_kb(pid: int) -> int | None:
    """Current resident set size of `pid` in kB."""
    return _status_kb(pid, "VmRSS")


def peak_rss_kb(pid: int) -> int | None:
    """Peak resident set size ("high water mark") of `pid` since it started, in kB."""
    return _status_kb(pid, "VmHWM")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's workers under its master)."""
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(p) for p in text)
    except FileNotFoundError:
        pass
    return out


# -- PostgreSQL --------------------------------------------------------------------------------------
def pg_admin_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_available() -> str | None:
    """None when the benchmark PostgreSQL server answers, else why not."""
    import psycopg

    url = pg_admin_url()
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means "not available", with the reason shown
        return f"PostgreSQL not reachable at {url} ({type(exc).__name__}); set BENCH_DATABASE_URL"


class PgDatabase:
    """A dedicated database (`bench_<purpose>_<random>`), dropped by `drop()`."""

    def __init__(self, purpose: str):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        self.name = f"bench_{purpose}_{uuid.uuid4().hex[:8]}"
        self._admin = pg_admin_url()
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        params = conninfo_to_dict(self._admin)
        params["dbname"] = self.name
        self.dsn = make_conninfo(**params)
        user = params.get("user", "postgres")
        password = f":{params['password']}" if params.get("password") else ""
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        self.url = f"postgresql://{user}{password}@{host}:{port}/{self.name}"

    def drop(self) -> None:
        """Drop the database; retried for a while, and never raising (it runs in `finally` blocks)."""
        import psycopg

        for _attempt in range(5):
            try:
                with psycopg.connect(self._admin, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                return
            except Exception as exc:  # the server may be restarting; try again, then say so
                error = exc
                time.sleep(5)
        log(f"could not drop database {self.name} ({type(error).__name__}); drop it by hand")


# -- figures -----------------------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured figure, its target and whether the target is met (None: no target or not measured)."""

    key: str
    bench: str
    name: str
    value: float | None
    unit: str = ""
    target: str | None = None  # e.g. ">= 0.8"
    met: bool | None = None
    note: str = ""
    not_measured: str | None = None
    detail: dict = field(default_factory=dict)

    @classmethod
    def measured(
        cls,
        key: str,
        bench: str,
        name: str,
        value: float | None,
        unit: str = "",
        *,
        op: str | None = None,
        threshold: float | None = None,
        note: str = "",
        detail: dict | None = None,
    ) -> Figure:
        target, met = None, None
        if op is not None:
            target = f"{op} {threshold:g}"
            if value is None:
                met = False
            elif op == ">=":
                met = value >= threshold
            elif op == "<=":
                met = value <= threshold
            elif op == "==":
                met = value == threshold
            else:
                raise ValueError(op)
        return cls(key, bench, name, value, unit, target, met, note, None, detail or {})

    @classmethod
    def missing(
        cls,
        key: str,
        bench: str,
        name: str,
        reason: str,
        *,
        op: str | None = None,
        threshold: float | None = None,
        unit: str = "",
    ) -> Figure:
        target = f"{op} {threshold:g}" if op is not None else None
        return cls(key, bench, name, None, unit, target, None, "", reason, {})

    def as_dict(self) -> dict:
        return asdict(self)

    def shown_value(self) -> str:
        if self.not_measured:
            return "not measured"
        if self.value is None:
            return "—"
        v = self.value
        if not self.unit and float(v).is_integer():
            return f"{int(v):,}"  # a count
        text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
        return f"{text} {self.unit}".strip()

    def shown_status(self) -> str:
        if self.not_measured:
            return f"not measured: {self.not_measured}"
        if self.met is None:
            return "(info)"
        return "met" if self.met else "MISSED"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
